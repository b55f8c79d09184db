// The Event Grid custom topic the app publishes renewal outcomes to (optional): created here, or an existing one the
// user brings, in its own resource group. The app publishes CloudEvents 1.0 (renewal/shells/topic.py), which a topic accepts
// only with inputSchema CloudEventSchemaV1_0: a topic left at the default (EventGridSchema) rejects every event. A
// topic's input schema is fixed when it is created, so a topic brought along must have been created with it
// (docs/deploy.md, "Outcome events").
param topicName string
@description('Create the topic (CloudEvents input schema, Entra ID publishing only); false: use an existing topic.')
param create bool = false
param location string = resourceGroup().location
param tags object = {}
param appPrincipalId string

resource createdTopic 'Microsoft.EventGrid/topics@2022-06-15' = if (create) {
  //checkov:skip=CKV_AZURE_192: disableLocalAuth is true below; checkov does not read the properties of a conditional (if) resource
  //checkov:skip=CKV_AZURE_191: the topic needs no identity of its own: it only receives the app's events, and each subscriber's delivery picks its own identity
  //checkov:skip=CKV_AZURE_193: the app publishes over the public endpoint (Flex Consumption without private endpoints); local (key) auth is disabled, so only Entra ID callers holding EventGrid Data Sender can publish
  name: topicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

// The topic the role is granted on: the one created above, or the existing one.
resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

// EventGrid Data Sender: publish outcome events with the managed identity (no topic access keys).
resource dataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, appPrincipalId, 'd5a91429-5739-47e2-a06b-3470a27159e7')
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'd5a91429-5739-47e2-a06b-3470a27159e7')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    createdTopic
  ]
}

output endpoint string = create ? createdTopic.properties.endpoint : topic.properties.endpoint
@description('The topic\'s input schema; anything but CloudEventSchemaV1_0 rejects the app\'s events.')
output inputSchema string = create ? createdTopic.properties.inputSchema : topic.properties.inputSchema
