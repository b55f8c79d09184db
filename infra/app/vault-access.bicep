// The app identity's roles on one existing Key Vault, in the vault's resource group. It needs only the identity's
// principal id, so main.bicep deploys it before the Function App, and the app starts with its Key Vault references
// resolvable (a reference that fails at start is retried only when the app restarts or the setting changes).
// A vault listed only for secrets (manageCertificates: false) gets no certificate role.
param vaultName string
param appPrincipalId string
@description('Grant Key Vault Certificates Officer: the app renews certificates in this vault.')
param manageCertificates bool = true
@description('Grant Key Vault Secrets User: the app reads secrets in this vault (Key Vault references for CA credentials or webhook secrets).')
param readsSecrets bool = false

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

// Key Vault Certificates Officer: read certificates and policies, create new versions (CSR), merge the issued chain.
resource certificatesOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (manageCertificates) {
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

output vaultId string = vault.id
