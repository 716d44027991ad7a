// Microsoft Defender for Cloud: threat protection for AI services, one setting
// for the whole subscription. Not part of the per-app deployment (main.bicep):
// two apps with different values would overwrite each other, and enabling a
// Defender plan needs Security Admin, which a per-app deployer rarely holds.
// A security admin deploys it once per subscription (docs/deployment.md):
//   az deployment sub create --name defender-ai --location <region> \
//       --template-file infra/bicep/subscription/defender-ai.bicep \
//       --parameters promptEvidence=true
// https://learn.microsoft.com/azure/templates/microsoft.security/2024-01-01/pricings
targetScope = 'subscription'

@description('Expose the suspicious prompt/response segments as alert evidence in the Defender portal (AIPromptEvidence extension).')
param promptEvidence bool = true

resource aiPlan 'Microsoft.Security/pricings@2024-01-01' = {
  //checkov:skip=CKV_AZURE_87:False positive: the check wants every Microsoft.Security/pricings resource to be the KeyVaults plan; this one is the AI plan. Defender for Key Vault is a subscription decision outside this template.
  name: 'AI'
  properties: {
    pricingTier: 'Standard'
    extensions: [
      {
        name: 'AIPromptEvidence'
        isEnabled: promptEvidence ? 'True' : 'False'
      }
    ]
  }
}

output pricingTier string = aiPlan.properties.pricingTier
