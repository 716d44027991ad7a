// The table service's own access log: every write and delete on the relay's tables, the block list among
// them, with who made it (the caller's Entra object ID or UPN, or the kind of key), when and on which row,
// in the Log Analytics workspace's StorageTableLogs table. A block list row's AddedBy is only what its
// writer claims; this log is what the storage account saw. Reads are left out: every relay instance reads
// the whole block list every RELAY_BLOCKLIST_REFRESH_S, and those reads say nothing about who changed it.
// Categories: https://learn.microsoft.com/azure/azure-monitor/reference/supported-logs/microsoft-storage-storageaccounts-tableservices-logs
// Schema: https://learn.microsoft.com/azure/azure-monitor/reference/tables/storagetablelogs

@description('The function app host storage account that holds the relay tables (an existing account).')
param storageAccountName string

@description('Resource ID of the Log Analytics workspace that receives the log.')
param workspaceId string

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2025-06-01' existing = {
  parent: storage
  name: 'default'
}

resource tableAccessLog 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'relay-table-writes'
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

output name string = tableAccessLog.name
