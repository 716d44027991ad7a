// Security Reader for the Defender for Cloud block-list Logic App, on the
// resource group of the relay's Azure OpenAI resource (deployed into that
// group, which may differ from the relay's). The workflow reads each alert
// again by its name from Defender for Cloud's alerts API,
// GET <resource group>/providers/Microsoft.Security/locations/<ascLocation>/alerts/<alertName>
// ("Alerts - Get Resource Group Level",
// https://learn.microsoft.com/rest/api/defenderforcloud-composite/alerts/get-resource-group-level),
// instead of trusting what was posted to its trigger. An alert about a resource
// is a resource of that resource's group, not of the resource itself, so the
// narrowest scope that can read it is the group. Security Reader: read-only
// access to Defender for Cloud (alerts, recommendations, policy),
// https://learn.microsoft.com/azure/defender-for-cloud/permissions.

@description('Principal ID of the Logic App\'s system-assigned identity.')
param principalId string

@description('Resource ID of the Logic App (seeds the assignment name).')
param workflowId string

var securityReaderRoleId = '39bc4728-0917-49c7-9d2c-d95423bc2eb4'

resource alertReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, workflowId, securityReaderRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', securityReaderRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
