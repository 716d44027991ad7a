// Storage for the Functions host (AzureWebJobsStorage) and the Flex Consumption
// deployment package container. Shared-key access is disabled: the host and the
// deployment both authenticate with the user-assigned identity.

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('Principal ID of the function app identity.')
param principalId string

// Storage Blob Data Owner: what an HTTP-only Functions app needs for
// identity-based AzureWebJobsStorage (host locks, keys) and the Flex
// Consumption deployment container. No queue/table triggers are used, so the
// queue and table roles are deliberately not granted.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' = {
  //checkov:skip=CKV_AZURE_35:Flex Consumption reaches this account over its public endpoint unless the app gets VNet integration and private endpoints (a documented hardening option, not the per-app default). Shared keys are disabled, so only Entra identities holding a data role (the relay identity) get in.
  //checkov:skip=CKV_AZURE_59:Same as CKV_AZURE_35: network access stays enabled for the Functions host; anonymous blob access and shared-key access are both disabled.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS' //checkov:skip=CKV_AZURE_206:Host state and the deployment package are re-creatable; geo-replication adds cost and nothing the relay needs.
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2025-06-01' = {
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

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = storage.name
// The service URIs as the account reports them (cloud- and DNS-independent).
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
