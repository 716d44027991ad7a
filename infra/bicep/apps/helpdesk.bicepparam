// Relay instance for the "Helpdesk assistant" SPA.
// Managed-identity auth to Azure OpenAI (no secret anywhere), one origin,
// one deployment, the v1 API. Replace the example IDs with your own
// (docs/deployment.md says where each one comes from).
using '../main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'helpdesk')
param location = readEnvironmentVariable('AZURE_LOCATION', 'swedencentral')

param applicationName = 'Helpdesk assistant'
param spaOrigins = [
  'https://helpdesk.contoso.example'
]

// From infra/scripts/register-entra-apps.sh (or the portal).
param relayApiClientId = '6f1c2d3e-0000-4000-8000-000000000001'
param spaClientId = '6f1c2d3e-0000-4000-8000-000000000011'
param tenantId = '72f988bf-0000-4000-8000-000000000002'

param openAiResourceId = '/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-ai-shared/providers/Microsoft.CognitiveServices/accounts/contoso-aoai'
param openAiEndpoint = 'https://contoso-aoai.openai.azure.com'
param openAiDeployments = [
  'gpt-4o-mini'
]
param openAiApiVersion = 'v1'
param openAiAuthMode = 'managed-identity'

param requiredRoles = [
  'Relay.User'
]
param maxTokens = 2048
