// Add one more vault to an existing deployment without re-running main.bicep: deploy this into the vault's
// resource group, in the vault's subscription, which may differ from the app's (docs/deploy.md, "Adding a vault").
// The values come from `azd env get-values`. Afterwards add the vault to RENEWAL_VAULTS (and to `vaults` in
// main.parameters.json, so the next `azd provision` keeps it).
targetScope = 'resourceGroup'

param vaultName string
@description('Renew this vault\'s certificates (Certificates Officer, system topic, subscription); false: a vault listed only for secrets.')
param certificates bool = true
param readsSecrets bool = false
param appPrincipalId string
param functionAppId string
@description('RENEWAL_NAME_TOKEN from the azd environment: names are unique per environment.')
@minLength(1)
param nameToken string
@description('The Event Grid system topic the vault already has, if any (az eventgrid system-topic list --query "[?source==\'<vault id>\']"); empty: create one.')
param existingSystemTopicName string = ''
@description('Resource group of that topic; empty: the vault\'s.')
param systemTopicResourceGroup string = ''
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventDeliverySchema string = 'EventGridSchema'
@description('EVENT_DELIVERY from the azd environment: \'function\' or \'queue\', as the rest of the deployment.')
@allowed([
  'function'
  'queue'
])
param eventDelivery string = 'function'
param deadLetterStorageAccountId string
param deadLetterContainerName string = 'eventgrid-deadletters'
@description('WORK_QUEUE_NAME from the azd environment (for eventDelivery = \'queue\').')
param workQueueName string = 'renewal-work'
param actionGroupId string = ''

module access 'app/vault-access.bicep' = {
  name: 'vault-access-${vaultName}-${nameToken}'
  params: {
    vaultName: vaultName
    appPrincipalId: appPrincipalId
    manageCertificates: certificates
    readsSecrets: readsSecrets
  }
}

module events 'app/vault.bicep' = if (certificates) {
  name: 'vault-${vaultName}-${nameToken}'
  scope: resourceGroup(empty(systemTopicResourceGroup) ? resourceGroup().name : systemTopicResourceGroup)
  params: {
    vaultName: vaultName
    vaultResourceGroup: resourceGroup().name
    vaultSubscriptionId: subscription().subscriptionId
    existingSystemTopicName: existingSystemTopicName
    nameToken: nameToken
    functionAppId: functionAppId
    subscribeEvents: true
    eventDeliverySchema: eventDeliverySchema
    eventDelivery: eventDelivery
    deadLetterStorageAccountId: deadLetterStorageAccountId
    deadLetterContainerName: deadLetterContainerName
    workQueueName: workQueueName
    actionGroupId: actionGroupId
  }
}

output systemTopicId string = certificates ? events.outputs.systemTopicId : ''
output vaultUrl string = 'https://${vaultName}${environment().suffixes.keyvaultDns}'
