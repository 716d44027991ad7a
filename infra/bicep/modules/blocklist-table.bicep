// The relay's shared state in Table storage (docs/blocklist.md): the block list
// and the token budget counters, two tables in the function app's own storage
// account. The relay identity gets Storage Table Data Contributor on these two
// tables only, not on the account (shared keys stay off: it authenticates with
// its managed identity).
// Table-level scope: https://learn.microsoft.com/azure/storage/tables/assign-azure-role-data-access

@description('The function app host storage account (an existing account).')
param storageAccountName string

@description('Principal ID of the relay identity.')
param principalId string

@description('RELAY_BLOCKLIST_TABLE.')
param blocklistTableName string = 'relayblocklist'

@description('RELAY_BUDGET_TABLE.')
param budgetTableName string = 'relaybudget'

// Storage Table Data Contributor: read, write and delete table entities.
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2025-06-01' = {
  parent: storage
  name: 'default'
}

resource blocklistTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2025-06-01' = {
  parent: tableService
  name: blocklistTableName
}

resource budgetTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2025-06-01' = {
  parent: tableService
  name: budgetTableName
}

resource blocklistContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(blocklistTable.id, principalId, storageTableDataContributorRoleId)
  scope: blocklistTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource budgetContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(budgetTable.id, principalId, storageTableDataContributorRoleId)
  scope: budgetTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output blocklistTableName string = blocklistTable.name
output budgetTableName string = budgetTable.name
