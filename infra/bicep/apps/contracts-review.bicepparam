// Relay instance for the "Contract review" SPA.
// Key mode: the Azure OpenAI key lives in Key Vault and the relay reads it with
// its managed identity (the key never appears in app settings). Two origins
// (production and staging), two deployments, a dated API version, and the
// optional browser login flow (a federated identity credential of the relay
// identity, no client secret), off until its credential exists.
using '../main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'contracts-review')
param location = readEnvironmentVariable('AZURE_LOCATION', 'westeurope')

param applicationName = 'Contract review'
param spaOrigins = [
  'https://contracts.fabrikam.example'
  'https://contracts-staging.fabrikam.example'
]

param relayApiClientId = '0c4a7f3e-0000-4000-8000-000000000021'
param spaClientId = '0c4a7f3e-0000-4000-8000-000000000022'
param tenantId = '5d2e9b1c-0000-4000-8000-000000000023'

param openAiResourceId = '/subscriptions/00000000-0000-4000-8000-0000000000bb/resourceGroups/rg-legal-ai/providers/Microsoft.CognitiveServices/accounts/fabrikam-legal-aoai'
param openAiEndpoint = 'https://fabrikam-legal-aoai.openai.azure.com'
param openAiDeployments = [
  'gpt-4.1'
  'gpt-4.1-mini'
]
param openAiApiVersion = '2025-01-01-preview'
param openAiAuthMode = 'key'
param keyVaultResourceId = '/subscriptions/00000000-0000-4000-8000-0000000000bb/resourceGroups/rg-legal-ai/providers/Microsoft.KeyVault/vaults/kv-fabrikam-legal'
param openAiKeySecretName = 'aoai-api-key'

// The login flow needs the relay's federated credential, which can only be made once the relay identity
// exists: provision once without it, run register-entra-apps.sh --login-flow, then set this to true
// (docs/deployment.md, "Optional browser login flow").
param enableLoginFlow = false

param requiredRoles = [
  'Relay.User'
  'Contracts.Reviewer'
]
param maxTokens = 8192
param maxBodyBytes = 8388608
param upstreamTimeoutSeconds = 180
