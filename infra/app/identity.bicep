// User-assigned managed identities: one for the Function App, one for the vaults' Event Grid system topics
// (it only writes dead letters). User-assigned, so role assignments can be made before the resources that use them.
param location string
param tags object
param appIdentityName string
param deadLetterIdentityName string

resource app 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
  location: location
  tags: tags
}

resource deadLetter 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: deadLetterIdentityName
  location: location
  tags: tags
}

output appIdentityId string = app.id
output appPrincipalId string = app.properties.principalId
output appClientId string = app.properties.clientId
output deadLetterIdentityId string = deadLetter.id
output deadLetterPrincipalId string = deadLetter.properties.principalId
