// Optional VNET integration: a virtual network with one subnet delegated to Microsoft.App/environments,
// which is the delegation Flex Consumption requires for outbound VNET integration.
param location string
param tags object
param vnetName string
param addressPrefix string = '10.42.0.0/16'
param appSubnetPrefix string = '10.42.1.0/24'

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
          // The storage account accepts this subnet through a service endpoint (see storage.bicep).
          serviceEndpoints: [
            {
              service: 'Microsoft.Storage'
            }
          ]
        }
      }
    ]
  }
}

output appSubnetId string = '${vnet.id}/subnets/app'
