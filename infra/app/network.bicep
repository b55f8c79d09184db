// Optional VNET integration: a virtual network with one subnet delegated to Microsoft.App/environments, which is
// the delegation Flex Consumption requires for outbound VNET integration (the Microsoft.App resource provider must be
// registered in the subscription, docs/deploy.md "VNET integration"). Not deployed when main.bicep is given an
// existing subnet (existingSubnetId), for instance one in a hub-peered VNET that reaches an internal CA.
param location string
param tags object
param vnetName string
@description('Address space of the VNET; pick one that does not overlap networks you peer it with.')
param addressPrefix string = '10.42.0.0/16'
@description('The app subnet, inside addressPrefix.')
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
          // Service endpoints: the storage firewall admits this subnet (storage.bicep), and a vault firewall can
          // admit it with a virtual network rule, which Key Vault accepts only from a subnet with Microsoft.KeyVault.
          serviceEndpoints: [
            {
              service: 'Microsoft.Storage'
            }
            {
              service: 'Microsoft.KeyVault'
            }
          ]
        }
      }
    ]
  }
}

output appSubnetId string = '${vnet.id}/subnets/app'
