// Reader for the app's identity on one subscription, so Azure Resource Graph can list the resources there that
// reference the vaults' certificates (`renewal consumers`, docs/targets.md). Deployed once per subscription in
// consumerSubscriptions; Resource Graph returns only what the identity may read.
targetScope = 'subscription'

param appPrincipalId string

// Reader: read-only (acdd72a7-3385-48ef-bd42-f606fba81ae7); the least role Resource Graph answers to.
resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, appPrincipalId, 'acdd72a7-3385-48ef-bd42-f606fba81ae7')
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'acdd72a7-3385-48ef-bd42-f606fba81ae7')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}
