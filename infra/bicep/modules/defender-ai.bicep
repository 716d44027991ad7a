// Microsoft Defender for Cloud: threat protection for AI services, for the
// whole subscription. Optional: main.bicep deploys it only when asked, since
// it changes billing for every AI resource in the subscription.
targetScope = 'subscription'

@description('Expose the suspicious prompt/response segments as alert evidence (AIPromptEvidence extension).')
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
