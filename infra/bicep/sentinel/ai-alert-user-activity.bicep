// Optional Microsoft Sentinel analytics rule (docs/deployment.md, "The SOC's Sentinel rule"):
// Defender for Cloud's AI alerts (SecurityAlert in the SOC's Sentinel workspace) joined to the same
// end user's requests through the relay (AppTraces in the relay's workspace, read across workspaces).
// main.bicep never deploys it: the SOC deploys it into the resource group of its own Sentinel
// workspace, once per relay it wants joined:
//   az deployment group create -g <sentinel-rg> -f infra/bicep/sentinel/ai-alert-user-activity.bicep \
//     -p sentinelWorkspaceName=<name> appWorkspaceId=<the relay's workspace resource ID> appName=<name>
// The query is infra/kql/sentinel/ai-alert-user-activity.kql, checked by tests/infra/test_kusto.py.

@description('Name of the Log Analytics workspace Microsoft Sentinel is enabled on (in this resource group).')
param sentinelWorkspaceName string

@description('Resource ID of the relay\'s Log Analytics workspace (the output RELAY_WORKSPACE_ID of main.bicep).')
param appWorkspaceId string

@description('Name of the relay instance, for the rule\'s name and display name.')
param appName string

@description('Create the rule enabled.')
param enabled bool = true

@allowed([
  'Informational'
  'Low'
  'Medium'
  'High'
])
param severity string = 'Medium'

resource sentinelWorkspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: sentinelWorkspaceName
}

resource rule 'Microsoft.SecurityInsights/alertRules@2025-09-01' = {
  scope: sentinelWorkspace
  name: guid(sentinelWorkspace.id, appWorkspaceId, 'relay-ai-alert-user-activity')
  kind: 'Scheduled'
  properties: {
    displayName: 'Relay ${appName}: Defender AI alert and the end user\'s requests'
    description: 'A Defender for Cloud AI alert (AlertType AI.*) whose Account entity is an end user of the relay ${appName}, with that user\'s requests through the relay from an hour before the alert to an hour after it: apps, addresses, tokens, refusals and Azure OpenAI request IDs (correlationId in its diagnostic logs).'
    enabled: enabled
    severity: severity
    query: replace(loadTextContent('../../kql/sentinel/ai-alert-user-activity.kql'), 'APP_WORKSPACE_RESOURCE_ID', appWorkspaceId)
    queryFrequency: 'PT1H'
    queryPeriod: 'PT3H'
    triggerOperator: 'GreaterThan'
    triggerThreshold: 0
    suppressionEnabled: false
    suppressionDuration: 'PT1H'
    tactics: []
    eventGroupingSettings: {
      aggregationKind: 'AlertPerResult'
    }
    entityMappings: [
      {
        entityType: 'Account'
        fieldMappings: [
          {
            identifier: 'AadUserId'
            columnName: 'oid'
          }
        ]
      }
    ]
    incidentConfiguration: {
      createIncident: true
    }
  }
}

output ruleId string = rule.id
