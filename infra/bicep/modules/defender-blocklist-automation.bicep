// Optional: close the loop from Defender for Cloud to the relay (docs/blocklist.md,
// "From Defender for Cloud"). A workflow automation sends every AI alert
// (alert types starting with "AI.", https://learn.microsoft.com/azure/defender-for-cloud/alerts-ai-workloads)
// to a Logic App (Consumption) that adds the alert's end user (account entity,
// AadUserId: the Entra object ID the relay sent as end_user_id) and IP address
// (ip entity, Address: the relay's source_ip) to the block list, with the
// alert ID and an expiry. Entity fields: https://learn.microsoft.com/azure/sentinel/entities-reference
// ("Account", "IP"); the automation's payload is the alert as the Defender for
// Cloud Alert connector returns it (https://learn.microsoft.com/connectors/ascalert/,
// "Entities"); the workflow reads both that and the Alerts API's camelCase form.
//
// The Logic App writes with its own system-assigned identity, which holds
// Storage Table Data Contributor on the block list table only. The trigger's
// callback URL (a SAS-signed secret) is handed to the automation through
// listCallbackUrl and appears in no output.

@description('Suffix of the resource names (the environment name).')
param name string

@description('Azure region of the Logic App and the automation.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('The storage account that holds the relay block list.')
param storageAccountName string

@description('RELAY_BLOCKLIST_TABLE.')
param blocklistTableName string

@minValue(1)
@maxValue(8784)
@description('How long a block from an alert lasts (ExpiresAt = now + this); an analyst can lift it earlier or extend it.')
param blockHours int = 24

@description('Where Defender for Cloud takes alerts from: this subscription (default) or resource groups of it, as resource IDs.')
param alertScopes array = [
  subscription().id
]

var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var workflowName = 'logic-blocklist-${name}'

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2025-06-01' existing = {
  parent: storage
  name: 'default'
}

resource blocklistTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2025-06-01' existing = {
  parent: tableService
  name: blocklistTableName
}

resource workflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: workflowName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    state: 'Enabled'
    definition: loadJsonContent('defender-blocklist-workflow.json')
    parameters: {
      tableUrl: {
        value: '${storage.properties.primaryEndpoints.table}${blocklistTableName}'
      }
      blockHours: {
        value: blockHours
      }
      addedBy: {
        value: 'Defender for Cloud via ${workflowName}'
      }
    }
  }
}

resource workflowWritesBlocklist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(blocklistTable.id, workflow.id, storageTableDataContributorRoleId)
  scope: blocklistTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: workflow.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource automation 'Microsoft.Security/automations@2023-12-01-preview' = {
  name: 'relay-blocklist-${name}'
  location: location
  tags: tags
  properties: {
    description: 'Adds the end user and IP address of each Defender for Cloud AI alert to the relay block list.'
    isEnabled: true
    scopes: [for scope in alertScopes: {
      description: 'AI alerts in ${scope}'
      scopePath: scope
    }]
    sources: [
      {
        eventSource: 'Alerts'
        ruleSets: [
          {
            rules: [
              {
                propertyJPath: 'AlertType'
                propertyType: 'String'
                expectedValue: 'AI.'
                operator: 'StartsWith'
              }
            ]
          }
        ]
      }
    ]
    actions: [
      {
        actionType: 'LogicApp'
        logicAppResourceId: workflow.id
        uri: listCallbackUrl('${workflow.id}/triggers/manual', '2019-05-01').value
      }
    ]
  }
}
