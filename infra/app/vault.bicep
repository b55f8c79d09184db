// One existing Key Vault, in its own resource group: the app identity's roles on it, an Event Grid system topic
// on it, the subscription that delivers its certificate events to the app, and an alert on dead letters.
// Deployed by main.bicep for each vault in `vaults`, and by add-vault.bicep for one more vault later.
param vaultName string
@description('Grant Key Vault Secrets User too: the app reads secrets in this vault (Key Vault references for CA credentials or webhook secrets).')
param readsSecrets bool = false
param appPrincipalId string
@description('Resource id of the Function App (the subscription targets its keyvault_certificate_events function).')
param functionAppId string
@description('Create the event subscription. It needs the function deployed (Event Grid checks it exists), so the first provision runs with false.')
param subscribeEvents bool = true
param deadLetterIdentityId string
param deadLetterStorageAccountId string
param deadLetterContainerName string
@description('Action group for the dead-letter alert; empty: the alert fires without notifying anyone.')
param actionGroupId string = ''
param tags object = {}

var functionName = 'keyvault_certificate_events'
var alertActions = [
  {
    actionGroupId: actionGroupId
  }
]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

// Key Vault Certificates Officer: read certificates and policies, create new versions (CSR), merge the issued chain.
resource certificatesOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, 'a4417e6f-fecd-4de8-b567-7b0420556985')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'a4417e6f-fecd-4de8-b567-7b0420556985')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault Secrets User: resolve Key Vault references (CA credentials, webhook secrets) stored in this vault.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (readsSecrets) {
  name: guid(vault.id, appPrincipalId, '4633458b-17de-408a-b874-0445c86b69e6')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// A system topic must be in the source's region.
resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${vaultName}'
  location: vault.location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${deadLetterIdentityId}': {}
    }
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeEvents) {
  parent: topic
  name: 'renewal-certificate-events'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.CertificateNearExpiry'
        'Microsoft.KeyVault.CertificateExpired'
      ]
    }
    // Event Grid's own limits: at most 30 attempts within at most 24 hours; the timer sweep covers the rest.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: deadLetterIdentityId
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

resource deadLetterAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-deadletter-${vaultName}'
  location: 'global'
  tags: tags
  properties: {
    description: 'A Key Vault certificate event for ${vaultName} could not be delivered to the renewal app and was dead-lettered.'
    severity: 1
    enabled: true
    scopes: [
      topic.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricName: 'DeadLetteredCount'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: empty(actionGroupId) ? [] : alertActions
  }
}

output systemTopicId string = topic.id
output vaultUrl string = vault.properties.vaultUri
