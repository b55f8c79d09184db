// The renewal app on Azure: `azd up` provisions this, deploys the code, then provisions again with the vault
// event subscriptions switched on (azure.yaml's postdeploy hook), because Event Grid refuses a subscription to a
// function that is not deployed yet. One module per concern under app/; docs/deploy.md explains every parameter.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names the resource group and seeds resource names.')
param environmentName string

@minLength(1)
@description('Region of the resource group, the Function App and its storage.')
param location string

@description('Resource group for the app; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Existing vaults whose certificates the app renews: [{ name, resourceGroup, readsSecrets (optional bool) }]. Each may be in another resource group of this subscription.')
param vaults array = []

@description('RENEWAL_CA_PROFILES: profile name -> { adapter, ...options }; secret options name another app setting (see secretSettings).')
param caProfiles object = {}

@description('RENEWAL_DEFAULT_CA_PROFILE: the profile for certificates without a renewal-ca tag; empty: untagged certificates are not managed.')
param defaultCaProfile string = ''

@description('RENEWAL_WEBHOOKS: endpoint name -> { url, secret_setting, tag (optional) }.')
param webhooks object = {}

@description('App setting name -> Key Vault secret URI (https://VAULT.vault.azure.net/secrets/NAME). Each becomes @Microsoft.KeyVault(SecretUri=...). The vault holding them needs readsSecrets: true.')
param secretSettings object = {}

@description('Further plain app settings, name -> string (e.g. RENEWAL_WINDOW_FRACTION, RENEWAL_WEBHOOK_MAX_AGE_HOURS). Secrets go in secretSettings.')
param extraSettings object = {}

@description('RENEWAL_SWEEP_SCHEDULE: NCRONTAB schedule of the timer sweep.')
param sweepSchedule string = '0 */30 * * * *'

@description('RENEWAL_JOURNAL_TABLE: the journal table in the app\'s own storage account.')
param journalTableName string = 'renewals'

@description('Optional existing Event Grid custom topic for outcome events: its name and resource group; empty: none.')
param outcomeTopicName string = ''
param outcomeTopicResourceGroup string = ''

@description('E-mail notified by the alerts; empty: alerts without an action group.')
param alertEmail string = ''

@description('Outbound VNET integration for the Function App (and the storage firewall restricted to its subnet).')
param enableVnetIntegration bool = false

@allowed([
  '3.12'
  '3.13'
])
param pythonVersion string = '3.13'

@description('Create the vaults\' event subscriptions. False on the first provision (the function is not deployed yet); the postdeploy hook sets it.')
param subscribeVaultEvents bool = false

var tags = {
  'azd-env-name': environmentName
  app: 'keyvault-private-ca-renewal'
}
var token = toLower(uniqueString(subscription().id, environmentName, location))
var functionAppName = 'func-renewal-${token}'
var deploymentContainerName = 'app-package-${token}'
var deadLetterContainerName = 'eventgrid-deadletters'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    tags: tags
    appIdentityName: 'id-renewal-${token}'
    deadLetterIdentityName: 'id-renewal-deadletter-${token}'
  }
}

module network 'app/network.bicep' = if (enableVnetIntegration) {
  name: 'network'
  scope: rg
  params: {
    location: location
    tags: tags
    vnetName: 'vnet-renewal-${token}'
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: 'strenewal${token}'
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    journalTableName: journalTableName
    allowedSubnetId: enableVnetIntegration ? network.outputs.appSubnetId : ''
  }
}

module storageAccess 'app/storage-access.bicep' = {
  name: 'storage-access'
  scope: rg
  params: {
    storageAccountName: storage.outputs.storageAccountName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    appPrincipalId: identity.outputs.appPrincipalId
    deadLetterPrincipalId: identity.outputs.deadLetterPrincipalId
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-renewal-${token}'
    applicationInsightsName: 'appi-renewal-${token}'
    appPrincipalId: identity.outputs.appPrincipalId
  }
}

module outcomeTopic 'app/outcome-topic.bicep' = if (!empty(outcomeTopicName)) {
  name: 'outcome-topic'
  scope: resourceGroup(empty(outcomeTopicResourceGroup) ? rg.name : outcomeTopicResourceGroup)
  params: {
    topicName: outcomeTopicName
    appPrincipalId: identity.outputs.appPrincipalId
  }
}

var vaultSettings = [for v in vaults: '${v.name}=https://${v.name}${environment().suffixes.keyvaultDns}']
var baseSettings = {
  RENEWAL_VAULTS: join(vaultSettings, ',')
  RENEWAL_CA_PROFILES: string(caProfiles)
  RENEWAL_WEBHOOKS: string(webhooks)
  RENEWAL_SWEEP_SCHEDULE: sweepSchedule
  RENEWAL_JOURNAL_TABLE: journalTableName
}
var defaultProfileSetting = empty(defaultCaProfile) ? {} : {
  RENEWAL_DEFAULT_CA_PROFILE: defaultCaProfile
}
var outcomeTopicSetting = empty(outcomeTopicName) ? {} : {
  RENEWAL_OUTCOME_TOPIC_ENDPOINT: outcomeTopic.outputs.endpoint
}
var renewalSettings = union(extraSettings, baseSettings, defaultProfileSetting, outcomeTopicSetting)

module function 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    location: location
    tags: tags
    planName: 'plan-renewal-${token}'
    functionAppName: functionAppName
    pythonVersion: pythonVersion
    identityId: identity.outputs.appIdentityId
    identityClientId: identity.outputs.appClientId
    storageAccountName: storage.outputs.storageAccountName
    blobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    subnetId: enableVnetIntegration ? network.outputs.appSubnetId : ''
    renewalSettings: renewalSettings
    secretSettings: secretSettings
  }
  // The host needs its storage roles before it first starts.
  dependsOn: [
    storageAccess
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: token
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
  }
}

module vaultModules 'app/vault.bicep' = [
  for vault in vaults: {
    name: 'vault-${vault.name}'
    scope: resourceGroup(vault.resourceGroup)
    params: {
      vaultName: vault.name
      readsSecrets: contains(vault, 'readsSecrets') ? vault.readsSecrets : false
      appPrincipalId: identity.outputs.appPrincipalId
      functionAppId: function.outputs.functionAppId
      subscribeEvents: subscribeVaultEvents
      deadLetterIdentityId: identity.outputs.deadLetterIdentityId
      deadLetterStorageAccountId: storage.outputs.storageAccountId
      deadLetterContainerName: storage.outputs.deadLetterContainerName
      actionGroupId: alerts.outputs.actionGroupId
      tags: tags
    }
    dependsOn: [
      storageAccess
    ]
  }
]

// azd stores these in the environment (.azure/<env>/.env); docs/deploy.md uses them to add a vault later.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.functionAppName
output FUNCTION_APP_ID string = function.outputs.functionAppId
output APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.appPrincipalId
output APP_IDENTITY_CLIENT_ID string = identity.outputs.appClientId
output DEADLETTER_IDENTITY_ID string = identity.outputs.deadLetterIdentityId
output STORAGE_ACCOUNT_ID string = storage.outputs.storageAccountId
output DEADLETTER_CONTAINER_NAME string = storage.outputs.deadLetterContainerName
output ACTION_GROUP_ID string = alerts.outputs.actionGroupId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
