// The renewal app on Azure: `azd up` provisions this, deploys the code, then provisions again with the vault
// event subscriptions switched on (azure.yaml's postdeploy hook), because Event Grid refuses a subscription to a
// function that is not deployed yet. One module per concern under app/; docs/deploy.md explains every parameter and
// walks through what each step creates.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names the resource group and seeds every resource name (token below).')
param environmentName string

@minLength(1)
@description('Region of the resource group, the Function App and its storage.')
param location string

@description('Resource group for the app; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Existing vaults: [{ name, resourceGroup, subscriptionId (optional; default this subscription), certificates (optional bool, default true: renew its certificates), readsSecrets (optional bool: it holds secrets the app reads), systemTopicName (optional: the Event Grid system topic the vault already has), systemTopicResourceGroup (optional: that topic\'s resource group, default the vault\'s) }]. A vault with certificates: false gets no certificate role, no system topic and no subscription.')
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

@description('Event Grid custom topic for outcome events: an existing one (its name, and outcomeTopicResourceGroup), or the one createOutcomeTopic makes; empty and createOutcomeTopic false: none.')
param outcomeTopicName string = ''
@description('Resource group of the outcome topic; empty: the app\'s.')
param outcomeTopicResourceGroup string = ''
@description('Create the outcome topic (inputSchema CloudEventSchemaV1_0, local auth off), named outcomeTopicName or evgt-renewal-outcomes-<token>.')
param createOutcomeTopic bool = false

@description('E-mail notified by the alerts; empty: alerts without an action group.')
param alertEmail string = ''

@description('Outbound VNET integration for the Function App (and the storage firewall restricted to its subnet).')
param enableVnetIntegration bool = false
@description('With VNET integration: an existing subnet to integrate with (resource id), e.g. in a hub-peered VNET that reaches an internal CA. It must be delegated to Microsoft.App/environments and have the Microsoft.Storage and Microsoft.KeyVault service endpoints. Empty: a VNET is created (vnetAddressPrefix, appSubnetPrefix).')
param existingSubnetId string = ''
@description('Address space of the VNET created when existingSubnetId is empty.')
param vnetAddressPrefix string = '10.42.0.0/16'
@description('The app subnet of that VNET.')
param appSubnetPrefix string = '10.42.1.0/24'

@allowed([
  '3.12'
  '3.13'
])
param pythonVersion string = '3.13'

// Flex Consumption's range, with its source: app/function.bicep.
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('The schema Event Grid delivers vault events in. The app reads both; CloudEventSchemaV1_0 suits a topic shared with CloudEvents consumers.')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventDeliverySchema string = 'EventGridSchema'

@description('How Key Vault events reach the app: \'function\' (Event Grid pushes to the Event Grid function; the Function App must be reachable from Event Grid) or \'queue\' (Event Grid writes them to the work queue in the app\'s storage account with each system topic\'s managed identity, for a Function App behind a private endpoint). docs/deploy.md, "Event delivery: the function or the queue".')
@allowed([
  'function'
  'queue'
])
param eventDelivery string = 'function'

@description('RENEWAL_SWEEP_FANOUT: \'off\', the timer sweeps every vault in its own invocation; \'queue\', it queues one unit per vault on the work queue and the queue function does them, spread over instances.')
@allowed([
  'off'
  'queue'
])
param sweepFanout string = 'off'

@description('RENEWAL_WORK_QUEUE: the work queue in the app\'s storage account (at most 56 characters: the host adds -poison).')
@minLength(3)
@maxLength(56)
param workQueueName string = 'renewal-work'

@description('RENEWAL_TARGETS: deployment target name -> { kind, resource_id, probe, sni, tag, options } (docs/targets.md).')
param targets object = {}

@description('The resources the app pushes renewed versions to, for their least-role assignments: [{ kind, name, resourceGroup, subscriptionId? }] with kind app_gateway, api_management, app_service or container_apps (docs/targets.md).')
param targetResources array = []

@description('Subscriptions Azure Resource Graph searches for the certificates\' consumers (Reader on each; docs/targets.md).')
param consumerSubscriptions array = []

@description('Create the vaults\' event subscriptions. False on the first provision (the function is not deployed yet); the postdeploy hook sets it. Also an output, so `azd down` removes it from the azd environment.')
param subscribeVaultEvents bool = false

var tags = {
  'azd-env-name': environmentName
  app: 'keyvault-private-ca-renewal'
}
// Every name below carries the token, so two azd environments (even sharing a resource group or a vault) never
// update each other's resources or deployments.
var token = toLower(uniqueString(subscription().id, environmentName, location))
var functionAppName = 'func-renewal-${token}'
var deploymentContainerName = 'app-package-${token}'
var deadLetterContainerName = 'eventgrid-deadletters'
var certificateVaults = filter(vaults, v => v.?certificates ?? true)
var useExistingSubnet = enableVnetIntegration && !empty(existingSubnetId)
var outcomeTopicEnabled = createOutcomeTopic || !empty(outcomeTopicName)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity-${token}'
  scope: rg
  params: {
    location: location
    tags: tags
    appIdentityName: 'id-renewal-${token}'
  }
}

module network 'app/network.bicep' = if (enableVnetIntegration && !useExistingSubnet) {
  name: 'network-${token}'
  scope: rg
  params: {
    location: location
    tags: tags
    vnetName: 'vnet-renewal-${token}'
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
  }
}

var appSubnetId = !enableVnetIntegration ? '' : (useExistingSubnet ? existingSubnetId : network.outputs.appSubnetId)

module storage 'app/storage.bicep' = {
  name: 'storage-${token}'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: 'strenewal${token}'
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    journalTableName: journalTableName
    workQueueName: workQueueName
    allowedSubnetId: appSubnetId
  }
}

module storageAccess 'app/storage-access.bicep' = {
  name: 'storage-access-${token}'
  scope: rg
  params: {
    storageAccountName: storage.outputs.storageAccountName
    journalTableName: storage.outputs.journalTableName
    appPrincipalId: identity.outputs.appPrincipalId
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring-${token}'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-renewal-${token}'
    applicationInsightsName: 'appi-renewal-${token}'
    appPrincipalId: identity.outputs.appPrincipalId
  }
}

module outcomeTopic 'app/outcome-topic.bicep' = if (outcomeTopicEnabled) {
  name: 'outcome-topic-${token}'
  scope: resourceGroup(empty(outcomeTopicResourceGroup) ? rg.name : outcomeTopicResourceGroup)
  params: {
    topicName: empty(outcomeTopicName) ? 'evgt-renewal-outcomes-${token}' : outcomeTopicName
    create: createOutcomeTopic
    location: location
    tags: tags
    appPrincipalId: identity.outputs.appPrincipalId
  }
}

// The app's roles on each vault need only its identity, so they exist before the app starts and resolves its
// Key Vault references (the function module depends on them).
module vaultAccess 'app/vault-access.bicep' = [
  for vault in vaults: {
    name: 'vault-access-${vault.name}-${token}'
    scope: resourceGroup(vault.?subscriptionId ?? subscription().subscriptionId, vault.resourceGroup)
    params: {
      vaultName: vault.name
      appPrincipalId: identity.outputs.appPrincipalId
      manageCertificates: vault.?certificates ?? true
      readsSecrets: vault.?readsSecrets ?? false
    }
  }
]

var vaultSettings = [for v in certificateVaults: '${v.name}=https://${v.name}${environment().suffixes.keyvaultDns}']
var baseSettings = {
  RENEWAL_VAULTS: join(vaultSettings, ',')
  RENEWAL_CA_PROFILES: string(caProfiles)
  RENEWAL_WEBHOOKS: string(webhooks)
  RENEWAL_SWEEP_SCHEDULE: sweepSchedule
  RENEWAL_JOURNAL_TABLE: journalTableName
  // The queue functions' bindings read RENEWAL_WORK_QUEUE (function_app.py), so it is set whatever the options.
  RENEWAL_WORK_QUEUE: storage.outputs.workQueueName
  RENEWAL_SWEEP_FANOUT: sweepFanout
}
var defaultProfileSetting = empty(defaultCaProfile) ? {} : {
  RENEWAL_DEFAULT_CA_PROFILE: defaultCaProfile
}
var targetsSetting = empty(targets) ? {} : {
  RENEWAL_TARGETS: string(targets)
}
var outcomeTopicSetting = outcomeTopicEnabled ? {
  RENEWAL_OUTCOME_TOPIC_ENDPOINT: outcomeTopic.outputs.endpoint
} : {}
var renewalSettings = union(extraSettings, baseSettings, defaultProfileSetting, outcomeTopicSetting, targetsSetting)

module function 'app/function.bicep' = {
  name: 'function-${token}'
  scope: rg
  params: {
    location: location
    tags: tags
    planName: 'plan-renewal-${token}'
    functionAppName: functionAppName
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    identityId: identity.outputs.appIdentityId
    identityClientId: identity.outputs.appClientId
    storageAccountName: storage.outputs.storageAccountName
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    subnetId: appSubnetId
    renewalSettings: renewalSettings
    secretSettings: secretSettings
  }
  // The host needs its storage roles, and its Key Vault references their vault roles, before it first starts.
  dependsOn: [
    storageAccess
    vaultAccess
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts-${token}'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: token
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
  }
}

// The fleet workbook over Application Insights (docs/metrics.md): expiry timeline, outcomes, failures, vaults.
module workbook 'app/workbook.bicep' = {
  name: 'workbook-${token}'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: token
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

// Deployment targets: the app's identity gets exactly the least role on exactly each target (docs/targets.md).
module appGatewayTargets 'app/target-app-gateway.bicep' = [
  for t in filter(targetResources, t => t.kind == 'app_gateway'): {
    name: 'target-appgw-${t.name}-${token}'
    scope: resourceGroup(t.?subscriptionId ?? subscription().subscriptionId, t.resourceGroup)
    params: { gatewayName: t.name, appPrincipalId: identity.outputs.appPrincipalId }
  }
]
module apiManagementTargets 'app/target-api-management.bicep' = [
  for t in filter(targetResources, t => t.kind == 'api_management'): {
    name: 'target-apim-${t.name}-${token}'
    scope: resourceGroup(t.?subscriptionId ?? subscription().subscriptionId, t.resourceGroup)
    params: { serviceName: t.name, appPrincipalId: identity.outputs.appPrincipalId }
  }
]
module appServiceTargets 'app/target-app-service.bicep' = [
  for t in filter(targetResources, t => t.kind == 'app_service'): {
    name: 'target-web-${t.name}-${token}'
    scope: resourceGroup(t.?subscriptionId ?? subscription().subscriptionId, t.resourceGroup)
    params: { certificateName: t.name, appPrincipalId: identity.outputs.appPrincipalId }
  }
]
module containerAppsTargets 'app/target-container-apps.bicep' = [
  for t in filter(targetResources, t => t.kind == 'container_apps'): {
    name: 'target-aca-${t.name}-${token}'
    scope: resourceGroup(t.?subscriptionId ?? subscription().subscriptionId, t.resourceGroup)
    params: { environmentName: t.name, appPrincipalId: identity.outputs.appPrincipalId }
  }
]
module consumerReaders 'app/consumers-reader.bicep' = [
  for s in consumerSubscriptions: {
    name: 'consumers-reader-${token}-${uniqueString(s)}'
    scope: subscription(s)
    params: { appPrincipalId: identity.outputs.appPrincipalId }
  }
]

// Only vaults whose certificates the app renews get a system topic, a subscription and delivery alerts.
module vaultEvents 'app/vault.bicep' = [
  for vault in certificateVaults: {
    name: 'vault-${vault.name}-${token}'
    scope: resourceGroup(vault.?subscriptionId ?? subscription().subscriptionId, vault.?systemTopicResourceGroup ?? vault.resourceGroup)
    params: {
      vaultName: vault.name
      vaultResourceGroup: vault.resourceGroup
      vaultSubscriptionId: vault.?subscriptionId ?? subscription().subscriptionId
      existingSystemTopicName: vault.?systemTopicName ?? ''
      nameToken: token
      functionAppId: function.outputs.functionAppId
      subscribeEvents: subscribeVaultEvents
      eventDeliverySchema: eventDeliverySchema
      eventDelivery: eventDelivery
      deadLetterStorageAccountId: storage.outputs.storageAccountId
      deadLetterContainerName: storage.outputs.deadLetterContainerName
      workQueueName: storage.outputs.workQueueName
      actionGroupId: alerts.outputs.actionGroupId
      tags: tags
    }
  }
]

// azd stores these in the environment (.azure/<env>/.env) and removes them on `azd down`; docs/deploy.md uses them
// to add a vault later. None shares a name with an input variable of main.parameters.json (not even AZURE_LOCATION,
// which `azd down` would then forget), except SUBSCRIBE_VAULT_EVENTS, on purpose: it must not survive `azd down`.
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.functionAppName
output FUNCTION_APP_ID string = function.outputs.functionAppId
output APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.appPrincipalId
output APP_IDENTITY_CLIENT_ID string = identity.outputs.appClientId
output STORAGE_ACCOUNT_ID string = storage.outputs.storageAccountId
output DEADLETTER_CONTAINER_NAME string = storage.outputs.deadLetterContainerName
output ACTION_GROUP_ID string = alerts.outputs.actionGroupId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output RENEWAL_NAME_TOKEN string = token
output EVENT_DELIVERY_SCHEMA string = eventDeliverySchema
output EVENT_DELIVERY string = eventDelivery
output WORK_QUEUE_NAME string = storage.outputs.workQueueName
output SYSTEM_TOPIC_IDS array = [for (v, i) in certificateVaults: vaultEvents[i].outputs.systemTopicId]
output OUTCOME_TOPIC_INPUT_SCHEMA string = outcomeTopicEnabled ? outcomeTopic.outputs.inputSchema : ''
output SUBSCRIBE_VAULT_EVENTS bool = subscribeVaultEvents
