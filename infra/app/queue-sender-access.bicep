// The right of one vault's Event Grid system topic to write Key Vault events into the app's work queue, granted to
// the topic's SYSTEM-assigned identity, in the app's resource group. Only with eventDelivery = 'queue'. As for dead
// letters (dead-letter-access.bicep), a system-assigned identity is what Event Grid may use behind the storage
// firewall, where it passes as a trusted Azure service. Deployed by vault.bicep, once the topic exists.
param storageAccountName string
param workQueueName string
@description('Principal id of the system topic\'s system-assigned identity.')
param topicPrincipalId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource workQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: workQueueName
}

// Storage Queue Data Message Sender, on the work queue only: Event Grid adds messages, and can neither read nor
// delete them.
resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workQueue.id, topicPrincipalId, 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a')
  scope: workQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a')
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}
