// Add one more vault to an existing deployment without re-running main.bicep: deploy this into the vault's
// resource group (docs/deploy.md, "Adding a vault"). The values come from `azd env get-values`.
// Afterwards add the vault to RENEWAL_VAULTS (and to `vaults` in main.parameters.json, so the next
// `azd provision` keeps it).
targetScope = 'resourceGroup'

param vaultName string
param readsSecrets bool = false
param appPrincipalId string
param functionAppId string
param deadLetterIdentityId string
param deadLetterStorageAccountId string
param deadLetterContainerName string = 'eventgrid-deadletters'
param actionGroupId string = ''

module vault 'app/vault.bicep' = {
  name: 'vault-${vaultName}'
  params: {
    vaultName: vaultName
    readsSecrets: readsSecrets
    appPrincipalId: appPrincipalId
    functionAppId: functionAppId
    subscribeEvents: true
    deadLetterIdentityId: deadLetterIdentityId
    deadLetterStorageAccountId: deadLetterStorageAccountId
    deadLetterContainerName: deadLetterContainerName
    actionGroupId: actionGroupId
  }
}

output systemTopicId string = vault.outputs.systemTopicId
