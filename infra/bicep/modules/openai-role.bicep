// Cognitive Services OpenAI User for the relay's identity, scoped to the one
// existing Azure OpenAI resource (deployed into that resource's group, which
// may differ from the relay's). Never the subscription or the resource group.

@description('Name of the existing Azure OpenAI (or AI Services) account.')
param openAiAccountName string

@description('Principal ID of the relay identity.')
param principalId string

// Cognitive Services OpenAI User: inference only, no keys, no management.
var cognitiveServicesOpenAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource openAi 'Microsoft.CognitiveServices/accounts@2025-06-01' existing = {
  name: openAiAccountName
}

resource openAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(openAi.id, principalId, cognitiveServicesOpenAiUserRoleId)
  scope: openAi
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAiUserRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output roleAssignmentId string = openAiUser.id
