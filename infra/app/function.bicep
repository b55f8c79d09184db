// The Function App on Flex Consumption (FC1), Linux, Python, running as the user-assigned identity.
// Every connection is identity-based: AzureWebJobsStorage, the deployment container, Application Insights,
// Key Vault references, Key Vault itself and the optional outcome topic.
param location string
param tags object
param planName string
param functionAppName string
@allowed([
  '3.12'
  '3.13'
])
param pythonVersion string
param identityId string
param identityClientId string
param storageAccountName string
@description('The storage account\'s primaryEndpoints (blob, queue, table), as the account reports them: sovereign clouds have other DNS suffixes.')
param blobEndpoint string
param queueEndpoint string
param tableEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string
// Flex Consumption accepts a maximum instance count from 40 to 1000: "The lowest maximum scale is currently 40. The
// highest currently supported value is 1000." (learn.microsoft.com/azure/azure-functions/flex-consumption-plan,
// Considerations, Scale; checked 2026-01). A renewal app needs few instances; 40 is the floor, not a target.
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048
@description('Subnet for outbound VNET integration; empty: none.')
param subnetId string = ''
@description('The renewal app\'s own settings (RENEWAL_*), already rendered as strings.')
param renewalSettings object
@description('App setting name -> Key Vault secret URI; each becomes a Key Vault reference resolved with the app identity.')
param secretSettings object = {}

// Identity-based AzureWebJobsStorage: the host uses the blob and queue URIs, the journal (renewal/shells/journal.py) the
// table URI; all three come from the account, not from a DNS suffix assumed here.
var hostSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  AZURE_CLIENT_ID: identityClientId
}
// {"NAME": "@Microsoft.KeyVault(SecretUri=URI)", ...}, resolved by the platform with keyVaultReferenceIdentity.
// Built as JSON text: setting names and secret URIs contain no quotes.
var secretPairs = [for item in items(secretSettings): '"${item.key}": "@Microsoft.KeyVault(SecretUri=${item.value})"']
var secretReferences = json('{${join(secretPairs, ',')}}')
var allSettings = union(hostSettings, renewalSettings, secretReferences)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption needs ZRS storage and a supporting region; a renewal missed during a zone outage is picked up by the timer sweep
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222: public network access stays on: Event Grid delivers to the AzureFunction endpoint and operators call the function-key HTTP triggers; enableVnetIntegration restricts outbound traffic
  //checkov:skip=CKV_AZURE_17: no incoming client certificates: Event Grid does not present one; the Event Grid system key and function keys authenticate callers
  //checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero by design; always-ready instances (scaleAndConcurrency.alwaysReady) are a cost choice left to the operator
  //checkov:skip=CKV_AZURE_213: Flex Consumption does not offer the App Service health check; Application Insights availability and the alerts cover it
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'renewal'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Flex Consumption sets FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION itself
      // (functionAppConfig.runtime) and rejects them as app settings.
      appSettings: [for setting in items(allSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

output functionAppId string = functionApp.id
output functionAppName string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
