// The Function App's own storage account: host state (blobs, queues), the Flex Consumption deployment
// container, the renewal journal (Table Storage), the work queue (the sweep's fan-out, and Key Vault events when
// they are delivered through the queue) and the Event Grid dead-letter container.
// Shared key access is disabled: everything authenticates with Entra ID (managed identities).
param location string
param tags object
param storageAccountName string
param deploymentContainerName string
param deadLetterContainerName string
param journalTableName string
@description('RENEWAL_WORK_QUEUE: the work queue; the host moves what fails maxDequeueCount times to <name>-poison.')
param workQueueName string
@description('Subnet allowed through the storage firewall when VNET integration is on; empty: public endpoint.')
param allowedSubnetId string = ''

var vnetOn = !empty(allowedSubnetId)
var subnetRules = [
  {
    id: allowedSubnetId
    action: 'Allow'
  }
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_206: LRS by default: the journal can be rebuilt from Key Vault by the timer sweep and host state is disposable; change the sku to ZRS/GRS if you want more
  //checkov:skip=CKV_AZURE_35: the firewall denies by default when enableVnetIntegration is on (defaultAction is computed); without VNET integration Flex Consumption reaches its storage over the public endpoint, with Entra ID auth only
  //checkov:skip=CKV_AZURE_59: public network access is needed without VNET integration (see CKV_AZURE_35); anonymous blob access and shared keys are both disabled
  //checkov:skip=CKV_AZURE_43: the name is 'strenewal' plus uniqueString() (13 lowercase alphanumerics), 22 characters, which checkov cannot evaluate
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Without VNET integration the Flex Consumption host reaches its storage over the public endpoint;
      // Entra ID authentication (no shared keys) is the control. With it, only the app's subnet and trusted
      // Azure services get through. Event Grid passes as a trusted service only when it writes dead letters with
      // the system topic's SYSTEM-assigned identity: a user-assigned identity is refused behind the firewall
      // whether or not trusted services are allowed (Event Grid docs, "Deliver events using managed identity",
      // firewall and virtual network rules), so vault.bicep dead-letters with the system-assigned one.
      bypass: 'AzureServices'
      defaultAction: vnetOn ? 'Deny' : 'Allow'
      virtualNetworkRules: vnetOn ? subnetRules : []
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource journalTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: journalTableName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// Created here rather than by the host, so that Event Grid can be subscribed to it (and given its role on it) in the
// same deployment, before the app has ever started.
resource workQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: workQueueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${workQueueName}-poison'
}

output storageAccountId string = storage.id
output storageAccountName string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
// The journal's endpoint as the account reports it, so sovereign clouds (other DNS suffixes) work.
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = deadLetterContainer.name
output journalTableName string = journalTable.name
output workQueueName string = workQueue.name
