// One existing Key Vault's certificate events: its Event Grid system topic, the subscription that delivers the
// certificate events to the app (to its Event Grid function, or to its work queue), the topic identity's right to
// write dead letters (and queue messages), and alerts on dead-lettered and dropped events. Deployed into the system topic's resource group (the vault's, unless an existing topic lives
// elsewhere) by main.bicep for each certificate vault in `vaults`, and by add-vault.bicep for one more vault later.
// The app's roles on the vault are granted apart (vault-access.bicep), before the Function App exists.
param vaultName string
@description('Resource group of the vault; default: this deployment\'s.')
param vaultResourceGroup string = resourceGroup().name
@description('Subscription of the vault; default: this deployment\'s.')
param vaultSubscriptionId string = subscription().subscriptionId
@description('Name of the Event Grid system topic that already exists on the vault (in this resource group), to attach the subscription to. Azure allows one system topic per source. Empty: create evgt-<vault>-<token>.')
param existingSystemTopicName string = ''
@description('The azd environment\'s name token (main.bicep\'s uniqueString); makes every name here unique per environment, so two environments sharing a vault never re-point each other.')
@minLength(1)
param nameToken string
@description('Resource id of the Function App (the subscription targets its keyvault_certificate_events function).')
param functionAppId string
@description('Create the event subscription. It needs the function deployed (Event Grid checks it exists), so the first provision runs with false.')
param subscribeEvents bool = true
@description('The schema Event Grid delivers the events in; the app reads both (renewal/flow/entry.py, renewal/pure/intake.py).')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventDeliverySchema string = 'EventGridSchema'
@description('How the events reach the app: \'function\', pushed to its Event Grid function (Event Grid must reach the Function App), or \'queue\', written to its work queue with the topic\'s system-assigned identity, for a Function App behind a private endpoint (docs/deploy.md, "Event delivery: the function or the queue").')
@allowed([
  'function'
  'queue'
])
param eventDelivery string = 'function'
@description('Resource id of the app\'s storage account, which holds the dead-letter container and the work queue.')
param deadLetterStorageAccountId string
param deadLetterContainerName string
@description('The work queue in that account (RENEWAL_WORK_QUEUE), for eventDelivery = \'queue\'.')
param workQueueName string = 'renewal-work'
@description('Action group for the delivery alerts; empty: the alerts fire without notifying anyone.')
param actionGroupId string = ''
param tags object = {}

var functionName = 'keyvault_certificate_events'
var queueDelivery = eventDelivery == 'queue'
// A queue subscription does not need the function deployed (Event Grid only writes to the queue), so it is created
// on the first provision too.
var subscribe = subscribeEvents || queueDelivery
var functionDestination = {
  endpointType: 'AzureFunction'
  properties: {
    resourceId: '${functionAppId}/functions/${functionName}'
    maxEventsPerBatch: 1
    preferredBatchSizeInKilobytes: 64
  }
}
// SYSTEM-assigned, as for dead letters: the identity Event Grid may use behind the storage firewall. One event per
// message, kept a week (the queue's own default) so that events outlast an outage of the app.
var queueDestination = {
  identity: {
    type: 'SystemAssigned'
  }
  destination: {
    endpointType: 'StorageQueue'
    properties: {
      resourceId: deadLetterStorageAccountId
      queueName: workQueueName
      queueMessageTimeToLiveInSeconds: 604800
    }
  }
}
var createTopic = empty(existingSystemTopicName)
var topicName = createTopic ? 'evgt-${vaultName}-${nameToken}' : existingSystemTopicName
var subscriptionName = 'renewal-${nameToken}'
var storageIdParts = split(deadLetterStorageAccountId, '/')
var alertActions = [
  {
    actionGroupId: actionGroupId
  }
]
// Event Grid reports the subscription dimension in upper case; both spellings are listed.
var subscriptionDimension = [
  {
    name: 'EventSubscriptionName'
    operator: 'Include'
    values: [
      subscriptionName
      toUpper(subscriptionName)
    ]
  }
]
var deliveryAlerts = [
  {
    kind: 'deadletter'
    metricName: 'DeadLetteredCount'
    description: 'A Key Vault certificate event for ${vaultName} could not be delivered to the renewal app and was written to the dead-letter container.'
  }
  {
    kind: 'dropped'
    metricName: 'DroppedEventCount'
    description: 'A Key Vault certificate event for ${vaultName} was dropped: neither delivered to the renewal app nor dead-lettered (for example the dead-letter container refused the topic identity). The timer sweep still renews the certificate.'
  }
]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
  scope: resourceGroup(vaultSubscriptionId, vaultResourceGroup)
}

// A system topic must be in the source's region. Azure allows one per source ("Only one system topic is allowed per
// source"), so a vault that already has one names it in existingSystemTopicName and this is not created.
resource createdTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createTopic) {
  name: topicName
  location: vault.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

// The topic the subscription hangs on: the one created above, or the vault's existing one.
resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: topicName
}

module deadLetterAccess 'dead-letter-access.bicep' = {
  name: 'deadletter-${vaultName}-${nameToken}'
  scope: resourceGroup(storageIdParts[2], storageIdParts[4])
  params: {
    storageAccountName: last(storageIdParts)
    deadLetterContainerName: deadLetterContainerName
    // An existing topic must have its system-assigned identity enabled (docs/deploy.md, "A vault that already has a
    // system topic").
    topicPrincipalId: createTopic ? createdTopic.identity.principalId : topic.identity.principalId
  }
}

module queueSenderAccess 'queue-sender-access.bicep' = if (queueDelivery) {
  name: 'queuesender-${vaultName}-${nameToken}'
  scope: resourceGroup(storageIdParts[2], storageIdParts[4])
  params: {
    storageAccountName: last(storageIdParts)
    workQueueName: workQueueName
    topicPrincipalId: createTopic ? createdTopic.identity.principalId : topic.identity.principalId
  }
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribe) {
  parent: topic
  name: subscriptionName
  properties: {
    // One of the two: Event Grid pushes to the function, or writes to the queue with the topic's identity.
    destination: queueDelivery ? null : functionDestination
    deliveryWithResourceIdentity: queueDelivery ? queueDestination : null
    eventDeliverySchema: eventDeliverySchema
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
    // SYSTEM-assigned: the only identity Event Grid may use behind the storage firewall (VNET integration on).
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
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
  dependsOn: [
    createdTopic
    deadLetterAccess
    queueSenderAccess
  ]
}

resource deliveryAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = [
  for alert in deliveryAlerts: {
    name: 'alert-${alert.kind}-${vaultName}-${nameToken}'
    location: 'global'
    tags: tags
    properties: {
      description: alert.description
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
            name: alert.kind
            metricName: alert.metricName
            metricNamespace: 'Microsoft.EventGrid/systemTopics'
            dimensions: subscriptionDimension
            operator: 'GreaterThan'
            threshold: 0
            timeAggregation: 'Total'
          }
        ]
      }
      actions: empty(actionGroupId) ? [] : alertActions
    }
    dependsOn: [
      createdTopic
    ]
  }
]

output systemTopicId string = topic.id
output systemTopicName string = topicName
output subscriptionName string = subscriptionName
output eventDelivery string = eventDelivery
