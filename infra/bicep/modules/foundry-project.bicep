// The Foundry project the relay serves the Responses API from (README.md, "The Responses API"):
// a new AIServices account and its project, or an existing project; and the relay identity's
// data-plane role on the project, Azure AI User (renamed Foundry User), scoped to that one project.
// Deployed into the project's resource group (the relay's own when created here).
// https://learn.microsoft.com/azure/foundry/concepts/rbac-foundry
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/ai-machine-learning

@description('Create the AIServices account and its project here; false: both exist already.')
param create bool

@description('Name of the AIServices (Foundry) account; also its custom subdomain when created here.')
param accountName string

@description('Name of the project in that account.')
param projectName string

param location string
param tags object = {}

@description('Principal ID of the relay identity.')
param principalId string

// Azure AI User: the data actions of a Foundry project (models, the Responses API), no management.
var azureAiUserRoleId = '53ca6127-db72-4b80-b1b0-d745d6d5456d'

resource newAccount 'Microsoft.CognitiveServices/accounts@2025-06-01' = if (create) {
  //checkov:skip=CKV_AZURE_236:disableLocalAuth is true below; checkov does not read the body of a conditional resource (tests/infra/test_app_settings.py asserts it).
  //checkov:skip=CKV_AZURE_238:The account has a system-assigned identity below; checkov does not read the body of a conditional resource (tested as above).
  //checkov:skip=CKV_AZURE_134:The relay reaches the project over its public endpoint with its Entra identity only (local auth off), as it reaches Azure OpenAI; private endpoints and VNet integration are the hardening step, as for the host storage (docs/deployment.md).
  name: accountName
  location: location
  tags: tags
  kind: 'AIServices'
  sku: {
    name: 'S0'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    customSubDomainName: accountName
    allowProjectManagement: true
    // Entra ID only: the relay's identity is the one way in, as on the Azure OpenAI resource.
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource newProject 'Microsoft.CognitiveServices/accounts/projects@2025-06-01' = if (create) {
  parent: newAccount
  name: projectName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    displayName: projectName
  }
}

resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' existing = {
  name: accountName
}

resource project 'Microsoft.CognitiveServices/accounts/projects@2025-06-01' existing = {
  parent: account
  name: projectName
}

resource aiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(project.id, principalId, azureAiUserRoleId)
  scope: project
  dependsOn: [
    newProject
  ]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureAiUserRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// "Microsoft Foundry SDKs and endpoints": https://<resource>.services.ai.azure.com/api/projects/<project>
output endpoint string = 'https://${account.properties.customSubDomainName}.services.ai.azure.com/api/projects/${projectName}'
output roleAssignmentId string = aiUser.id
