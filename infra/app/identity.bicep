// The Function App's user-assigned managed identity. User-assigned, so its role assignments (storage, Application
// Insights, the vaults) exist before the app first starts. The vaults' Event Grid system topics write dead letters
// with their own system-assigned identities instead (vault.bicep, dead-letter-access.bicep): behind a storage firewall
// Event Grid accepts no other kind.
param location string
param tags object
param appIdentityName string

resource app 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
  location: location
  tags: tags
}

output appIdentityId string = app.id
output appPrincipalId string = app.properties.principalId
output appClientId string = app.properties.clientId
