// Alerts when one of the relay's controls fails (docs/telemetry.md, "Alerts"): log search alert rules
// on the relay's workspace, whose queries are the files of infra/kql/alerts (checked by
// tests/infra/test_kusto.py), and, with the Defender automation, a metric alert on its Logic App's
// failed runs. Each notifies the action group given, if any; without one the alerts still fire and
// show in Azure Monitor's alert list.

@description('Resource ID of the relay\'s Log Analytics workspace (the rules\' scope).')
param workspaceId string

@description('Azure region of the log search alert rules (the workspace\'s).')
param location string

@description('Tags applied to every alert rule.')
param tags object = {}

@description('Suffix of the rule names (the instance).')
param name string

@description('Resource ID of an existing action group to notify; empty: no notification.')
param actionGroupId string = ''

@description('RELAY_BLOCKLIST_ENABLED: the block-list rules exist only when the relay reads a block list.')
param blocklistEnabled bool

@description('Seconds beyond which a block-list copy counts as stale.')
@minValue(60)
param blocklistMaxAgeSeconds int

@description('Whether any token budget is set: the budget-sync rule exists only then.')
param budgetsEnabled bool

@description('Resource ID of the Defender automation\'s Logic App; empty when the automation is off.')
param automationWorkflowId string = ''

var actionGroups = empty(actionGroupId) ? [] : [
  actionGroupId
]
// The age bound is a let statement at the top of its query file; the template puts its own value in.
var blocklistStaleQuery = replace(loadTextContent('../../kql/alerts/blocklist-stale.kql'), 'let max_age_s = 150.0;', 'let max_age_s = ${blocklistMaxAgeSeconds}.0;')
var rules = [
  {
    key: 'blocklist-stale'
    deploy: blocklistEnabled
    displayName: 'Relay: block list not refreshed'
    description: 'An instance\'s copy of the block list is older than ${blocklistMaxAgeSeconds} s, or it cannot read the table: new blocks are not enforced there (docs/blocklist.md).'
    severity: 1
    query: blocklistStaleQuery
    frequency: 'PT5M'
    window: 'PT15M'
  }
  {
    key: 'blocklist-unavailable'
    deploy: blocklistEnabled
    displayName: 'Relay: callers refused with blocklist_unavailable'
    description: 'Instances that have never read the block list answer 503 blocklist_unavailable (fail-closed cold start).'
    severity: 1
    query: loadTextContent('../../kql/alerts/blocklist-unavailable-answers.kql')
    frequency: 'PT5M'
    window: 'PT5M'
  }
  {
    key: 'budget-sync-failing'
    deploy: budgetsEnabled
    displayName: 'Relay: token budget sync failing'
    description: 'An instance cannot write its token counts to the budget table: each instance enforces only what it knows until storage answers.'
    severity: 2
    query: loadTextContent('../../kql/alerts/budget-sync-failing.kql')
    frequency: 'PT5M'
    window: 'PT6H'
  }
  {
    key: 'telemetry-missing'
    deploy: true
    displayName: 'Relay: request records not arriving'
    description: 'The Functions host served requests but no relay.request record arrived: the evidence the SOC joins to Defender alerts is missing.'
    severity: 2
    query: loadTextContent('../../kql/alerts/telemetry-missing.kql')
    frequency: 'PT15M'
    window: 'PT30M'
  }
]

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in filter(rules, r => r.deploy): {
  name: 'relay-${rule.key}-${name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}]

resource automationRunsFailed 'Microsoft.Insights/metricAlerts@2018-03-01' = if (!empty(automationWorkflowId)) {
  name: 'relay-automation-runs-failed-${name}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Runs of the Defender block-list automation failed: alerts it should have acted on may have blocked no one (its run history says which step failed).'
    severity: 1
    enabled: true
    scopes: [
      automationWorkflowId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'RunsFailed'
          metricName: 'RunsFailed'
          metricNamespace: 'Microsoft.Logic/workflows'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    autoMitigate: true
    actions: [for group in actionGroups: {
      actionGroupId: group
    }]
  }
}

output logAlertNames array = [for rule in filter(rules, r => r.deploy): 'relay-${rule.key}-${name}']
