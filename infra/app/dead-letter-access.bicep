// The right of one vault's Event Grid system topic to write dead letters into the app's dead-letter container,
// granted to the topic's SYSTEM-assigned identity, in the app's resource group. Behind a storage firewall Event
// Grid delivers and dead-letters with a system-assigned identity only (Event Grid docs, "Deliver events using
// managed identity", firewall and virtual network rules); the same identity serves without a firewall, so there is
// one path. Deployed by vault.bicep, which knows the topic's principal only once the topic exists.
param storageAccountName string
param deadLetterContainerName string
@description('Principal id of the system topic\'s system-assigned identity.')
param topicPrincipalId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

// Storage Blob Data Contributor, on the dead-letter container only: Event Grid writes undeliverable events there.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, topicPrincipalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}
