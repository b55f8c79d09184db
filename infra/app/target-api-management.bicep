// The app identity's role on one API Management service it pushes renewed certificates to (docs/targets.md). A
// push reads the service and its certificate entities, then POSTs refreshHostnames and refreshSecret. Deploy it
// in the service's resource group.
param serviceName string
param appPrincipalId string

resource service 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: serviceName
}

// API Management Service Contributor: read the service and its certificates, refresh hostnames and secrets.
resource serviceContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(service.id, appPrincipalId, '312a565d-c81f-4fd8-895a-4e21e48d571c')
  scope: service
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '312a565d-c81f-4fd8-895a-4e21e48d571c')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output serviceId string = service.id
