// The SOC pack in the relay's workspace (docs/telemetry.md, "The SOC pack"): the KQL functions that
// parse the relay's records into typed columns, saved in the workspace so that anyone who may query
// it can call them (RelayRequests(), ...), and a workbook on top of them. The queries are the files
// of infra/kql, each checked by tests/infra/test_kusto.py with Microsoft's Kusto language service.

@description('Name of the relay\'s Log Analytics workspace.')
param workspaceName string

@description('Azure region of the workbook.')
param location string

@description('Tags applied to the workbook.')
param tags object = {}

@description('Display name of the workbook.')
param workbookName string

@description('Resource ID of the workspace whose SecurityAlert table the workbook reads Defender for Cloud\'s AI alerts from (the SOC\'s Microsoft Sentinel workspace, or where Defender exports alerts). Empty: the relay\'s own workspace, which has the table only if Defender for Cloud exports alerts there.')
param alertWorkspaceId string = ''

var category = 'Relay'
// One saved function per file of infra/kql/functions; the alias is the name queries call.
var savedFunctions = [
  {
    alias: 'RelayRequests'
    displayName: 'The relay\'s request records (relay.request/1), typed'
    query: loadTextContent('../../kql/functions/RelayRequests.kql')
  }
  {
    alias: 'RelayAudit'
    displayName: 'Block-list and budget changes as their writers describe them (relay.audit/1)'
    query: loadTextContent('../../kql/functions/RelayAudit.kql')
  }
  {
    alias: 'RelayTableWrites'
    displayName: 'Writes to the relay\'s tables as Azure Storage saw them'
    query: loadTextContent('../../kql/functions/RelayTableWrites.kql')
  }
  {
    alias: 'RelayTokensByUser'
    displayName: 'Tokens, requests and refusals per end user'
    query: loadTextContent('../../kql/functions/RelayTokensByUser.kql')
  }
  {
    alias: 'RelayControlEvents'
    displayName: 'The relay\'s block-list and budget-sync events'
    query: loadTextContent('../../kql/functions/RelayControlEvents.kql')
  }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

// RelayTokensByUser calls RelayRequests: saved one at a time, in order, so a function is there before
// the one that calls it.
@batchSize(1)
resource functions 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = [for fn in savedFunctions: {
  parent: workspace
  name: 'relay-${toLower(fn.alias)}'
  properties: {
    category: category
    displayName: fn.displayName
    query: fn.query
    functionAlias: fn.alias
    version: 2
  }
}]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(workspace.id, 'relay-soc-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: workbookName
    category: 'workbook'
    sourceId: workspace.id
    version: 'Notebook/1.0'
    serializedData: replace(loadTextContent('../../kql/workbook/relay-soc.workbook.json'), 'ALERT_WORKSPACE_RESOURCE_ID', empty(alertWorkspaceId) ? workspace.id : alertWorkspaceId)
  }
  dependsOn: [
    functions
  ]
}

output workbookId string = workbook.id
output functionAliases array = [for fn in savedFunctions: fn.alias]
