// The table where the relay keeps the key that binds Responses API ids to their caller
// (shared/responses_key.py; SECURITY.md, "Another user's Responses state"), in the function
// app's own storage account. The relay identity gets Storage Table Data Contributor on this
// table only: whoever reads the key can mint ids for anyone.
// Table-level scope: https://learn.microsoft.com/azure/storage/tables/assign-azure-role-data-access

@description('The function app host storage account (an existing account).')
param storageAccountName string

@description('Principal ID of the relay identity.')
param principalId string

@description('RELAY_RESPONSES_TABLE.')
param tableName string = 'relayresponses'

// Storage Table Data Contributor: read, write and delete table entities.
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2025-06-01' existing = {
  parent: storage
  name: 'default'
}

resource responsesTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2025-06-01' = {
  parent: tableService
  name: tableName
}

resource responsesContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(responsesTable.id, principalId, storageTableDataContributorRoleId)
  scope: responsesTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output tableName string = responsesTable.name
