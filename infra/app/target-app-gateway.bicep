// The app identity's role on one Application Gateway it pushes renewed certificates to (docs/targets.md). A push
// reads the gateway and updates its tags (ApplicationGateways_UpdateTags), which makes the gateway re-read its
// versionless Key Vault secrets at once. Deploy it in the gateway's resource group.
param gatewayName string
param appPrincipalId string

resource gateway 'Microsoft.Network/applicationGateways@2024-05-01' existing = {
  name: gatewayName
}

// Network Contributor: read the gateway and write its tags; no built-in role narrower than this writes a gateway.
resource networkContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(gateway.id, appPrincipalId, '4d97b98b-1d4f-4787-a291-c67834d212e7')
  scope: gateway
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4d97b98b-1d4f-4787-a291-c67834d212e7')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output gatewayId string = gateway.id
