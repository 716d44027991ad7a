// Key Vault Secrets User for the relay's identity on the one secret that holds
// the Azure OpenAI key (key mode), not on the vault: the vault may be shared,
// and a vault-wide grant would let the relay read every secret in it.
// Azure RBAC for Key Vault accepts role assignments on a single secret.
// https://learn.microsoft.com/azure/key-vault/general/rbac-guide

@description('Name of the existing Key Vault (Azure RBAC permission model).')
param keyVaultName string

@description('Name of the secret the relay reads (the Azure OpenAI key).')
param secretName string

@description('Principal ID of the relay identity.')
param principalId string

// Key Vault Secrets User: read secret values, nothing else.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2025-05-01' existing = {
  name: keyVaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2025-05-01' existing = {
  parent: vault
  name: secretName
}

// A vault in the access policy permission model ignores role assignments: the
// grant below would succeed and the relay would still get 403 on every read.
// Refuse it with the guard main.bicep uses (a lookup of the message in an empty
// object, reached only through the branch of if() that ARM evaluates), here at
// run time because the vault's mode is only known then, before the role
// assignment is written. A vault without the property predates RBAC mode.
var rbacAuthorization = contains(vault.properties, 'enableRbacAuthorization') ? vault.properties.enableRbacAuthorization : false
var accessPolicyVaultError = 'Key Vault ${keyVaultName} uses the access policy permission model (enableRbacAuthorization false), which ignores role assignments, so the relay could never read secret ${secretName}. Switch the vault to Azure RBAC (az keyvault update --name ${keyVaultName} --enable-rbac-authorization true, after granting RBAC roles to its other users) or use an RBAC-mode vault.'

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(secret.id, principalId, keyVaultSecretsUserRoleId)
  scope: secret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: rbacAuthorization ? 'Relay reads the Azure OpenAI key' : any({})[accessPolicyVaultError]
  }
}
