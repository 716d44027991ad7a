// Optional: close the loop from Defender for Cloud to the relay (docs/blocklist.md,
// "From Defender for Cloud"). A workflow automation sends AI alerts (alert
// types starting with "AI.",
// https://learn.microsoft.com/azure/defender-for-cloud/alerts-ai-workloads) to
// a Logic App (Consumption) that may add the alert's end users (account
// entities, aadUserId: the Entra object ID the relay sent as end_user_id) and,
// when opted in, its IP addresses (ip entities, address: the relay's source_ip)
// to the block list, with the alert ID and an expiry.
//
// The trigger's callback URL is a SAS-signed secret, but it cannot tell who
// called it, so the workflow trusts nothing in the posted body but the alert's
// name: it reads the alert again from Defender for Cloud's alerts API with its
// own identity (Security Reader on the Azure OpenAI resource's group,
// defender-alert-reader.bicep) and acts only when that alert is about this
// relay's Azure OpenAI resource (resourceIdentifiers, type AzureResource), is
// active, is of a type in alertTypes and is at least minimumSeverity
// (https://learn.microsoft.com/rest/api/defenderforcloud-composite/alerts/get-resource-group-level).
// Its run history keeps no alert content (secure inputs and outputs); the rows
// it writes are the record of what it did.
//
// The Logic App writes with its own system-assigned identity, which holds
// Storage Table Data Contributor on the block list table only. The trigger's
// callback URL is handed to the automation through listCallbackUrl and appears
// in no output.

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

@description('Resource ID of the relay\'s Azure OpenAI (or AI Services) account: only alerts about it block anyone.')
param openAiResourceId string

@minLength(1)
@description('Where Defender for Cloud keeps this subscription\'s alerts (its ascLocation, e.g. westeurope): `az security location list`, or the locations/<ascLocation> part of any alert\'s ID.')
param alertLocation string

// The alert types on which the alert's named user is the actor, from
// https://learn.microsoft.com/azure/defender-for-cloud/alerts-ai-workloads
// (docs/blocklist.md has the table of every AI alert type and why it is in or out):
// - AI.Azure_Jailbreak.ContentFiltering.BlockedAttempt / .DetectedAttempt: a direct
//   prompt injection, "an attempt to manipulate the system prompt", made by the
//   user who sent the prompt;
// - AI.Azure_MaliciousUrl.UserPrompt: a phishing URL "sent by a user to an AI application".
// Left out because the named user may be the victim or not the actor: phishing URLs
// in a model response or of unknown origin, ASCII smuggling ("usually applied
// without the user's knowledge"), credentials in a model response, and the
// resource-level detections (access anomalies, wallet attacks, suspicious IPs and
// user agents, tool invocations, sensitive data anomalies, operations by a
// service principal).
var defaultAlertTypes = [
  'AI.Azure_Jailbreak.ContentFiltering.BlockedAttempt'
  'AI.Azure_Jailbreak.ContentFiltering.DetectedAttempt'
  'AI.Azure_MaliciousUrl.UserPrompt'
]

@description('Alert types that block their users (and, with blockAddresses, their IP addresses); empty: the three types above.')
param alertTypes array = []

@allowed([
  'Informational'
  'Low'
  'Medium'
  'High'
])
@description('Alerts below this severity block no one.')
param minimumSeverity string = 'Medium'

@description('Also block the alert\'s IP addresses. Off by default: one user behind a shared NAT or proxy address could get everyone behind it blocked by triggering an alert on purpose.')
param blockAddresses bool = false

var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var workflowName = 'logic-blocklist-${name}'
// /subscriptions/<sub>/resourceGroups/<rg>/providers/<ns>/<type>/<name>
var openAiParts = split(openAiResourceId, '/')

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
      alertsUrl: {
        value: '${environment().resourceManager}subscriptions/${openAiParts[2]}/resourceGroups/${openAiParts[4]}/providers/Microsoft.Security/locations/${alertLocation}/alerts/'
      }
      armAudience: {
        value: environment().resourceManager
      }
      openAiResourceId: {
        value: openAiResourceId
      }
      alertTypes: {
        value: empty(alertTypes) ? defaultAlertTypes : alertTypes
      }
      minimumSeverity: {
        value: minimumSeverity
      }
      blockAddresses: {
        value: blockAddresses
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

module workflowReadsAlerts 'defender-alert-reader.bicep' = {
  name: take('relay-defender-alerts-${name}', 64)
  scope: resourceGroup(openAiParts[2], openAiParts[4])
  params: {
    principalId: workflow.identity.principalId
    workflowId: workflow.id
  }
}

resource automation 'Microsoft.Security/automations@2023-12-01-preview' = {
  name: 'relay-blocklist-${name}'
  location: location
  tags: tags
  properties: {
    description: 'Sends Defender for Cloud AI alerts to the Logic App that blocks the users (and, if opted in, the IP addresses) of the alerts it is configured to act on.'
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

@description('Resource ID of the Logic App (the failed-runs alert watches it).')
output workflowId string = workflow.id
