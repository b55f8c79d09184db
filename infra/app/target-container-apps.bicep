// The app identity's role on one Container Apps managed environment whose Key Vault certificate it re-puts
// (docs/targets.md). No built-in role writes environment certificates without also writing the apps, so this
// module defines a custom role holding exactly those actions, assignable in this resource group only, and
// assigns it on the environment. Deploy it in the environment's resource group; the deployer needs
// Microsoft.Authorization/roleDefinitions/write (Owner or User Access Administrator) there.
param environmentName string
param appPrincipalId string

resource environment 'Microsoft.App/managedEnvironments@2025-01-01' existing = {
  name: environmentName
}

var certificateWriterRoleId = guid(resourceGroup().id, 'renewal-container-apps-certificate-writer')

resource certificateWriter 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: certificateWriterRoleId
  properties: {
    roleName: 'Container Apps Environment Certificate Writer (renewal app, ${uniqueString(resourceGroup().id)})'
    description: 'Read and re-put Container Apps environment certificates, and poll their operations.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.App/managedEnvironments/certificates/read'
          'Microsoft.App/managedEnvironments/certificates/write'
          'Microsoft.App/locations/managedEnvironmentOperationStatuses/read'
          'Microsoft.App/locations/managedEnvironmentOperationResults/read'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

// Container Apps Environment Certificate Writer: the custom role above, on this environment only.
resource certificateWriterAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(environment.id, appPrincipalId, certificateWriterRoleId)
  scope: environment
  properties: {
    roleDefinitionId: certificateWriter.id
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output environmentId string = environment.id
