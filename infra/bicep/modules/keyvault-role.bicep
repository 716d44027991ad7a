// Key Vault Secrets User for the relay's identity on one existing vault
// (RBAC-mode vault). Used in key mode (the Azure OpenAI API key is a secret)
// and for the optional Easy Auth login client secret (a Key Vault reference).

@description('Name of the existing Key Vault.')
param keyVaultName string

@description('Principal ID of the relay identity.')
param principalId string

// Key Vault Secrets User: read secret values, nothing else.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2025-05-01' existing = {
  name: keyVaultName
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output vaultUri string = vault.properties.vaultUri
