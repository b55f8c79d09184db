// The app identity's role on one App Service certificate (Microsoft.Web/certificates) it re-puts so App Service
// syncs the new Key Vault version now (docs/targets.md). Deploy it in the certificate's resource group.
param certificateName string
param appPrincipalId string

resource certificate 'Microsoft.Web/certificates@2024-04-01' existing = {
  name: certificateName
}

// Website Contributor: read and write this certificate resource only (the role is scoped to it, not to the group).
resource websiteContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(certificate.id, appPrincipalId, 'de139f84-1756-47ae-9be6-808fbbe84772')
  scope: certificate
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'de139f84-1756-47ae-9be6-808fbbe84772')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output certificateId string = certificate.id
