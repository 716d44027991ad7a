// Log Analytics workspace + workspace-based Application Insights.
// Local (instrumentation-key) authentication is disabled: telemetry is only
// accepted with an Entra token, which the function app gets with its
// user-assigned identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Principal ID of the identity that publishes telemetry.')
param publisherPrincipalId string

@description('Days of log retention of the workspace\'s other tables.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

// The relay's records hold end users' object IDs and IP addresses: they are kept for a stated time
// (docs/telemetry.md, "Retention, access and purge"), set per table. Application Insights tables are
// retained 90 days at no extra charge; StorageTableLogs (who wrote the block list) is billed after 31.
@description('Days the relay\'s records (AppTraces, AppMetrics, AppRequests, AppDependencies) and the table access log (StorageTableLogs) are kept, then deleted.')
@minValue(30)
@maxValue(730)
param telemetryRetentionInDays int = 90

@description('Daily ingestion cap of the workspace in GB (-1: none). Past it, Azure Monitor drops data until the next reset: a bound on the bill, at the price of records lost on a day that reaches it.')
@minValue(-1)
param dailyQuotaGb int = 10

@description('false (default): reading the relay\'s records needs rights on the workspace (Log Analytics Reader or a table-level role). true: anyone who may read the Application Insights resource may read its records (resource-context access), Reader on the resource group included.')
param resourceContextLogAccess bool = false

var evidenceTables = [
  'AppTraces'
  'AppMetrics'
  'AppRequests'
  'AppDependencies'
  'StorageTableLogs'
]

// Monitoring Metrics Publisher: needed to send telemetry with Entra auth.
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
    features: {
      enableLogAccessUsingOnlyResourcePermissions: resourceContextLogAccess
    }
  }
}

resource evidenceRetention 'Microsoft.OperationalInsights/workspaces/tables@2023-09-01' = [for table in evidenceTables: {
  parent: workspace
  name: table
  properties: {
    retentionInDays: telemetryRetentionInDays
    totalRetentionInDays: telemetryRetentionInDays
  }
}]

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource publisherRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, publisherPrincipalId, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: publisherPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output applicationInsightsName string = appInsights.name
// The connection string identifies the component and its ingestion endpoint;
// with DisableLocalAuth it grants nothing on its own (not a secret).
output connectionString string = appInsights.properties.ConnectionString
output workspaceId string = workspace.id
output workspaceName string = workspace.name
