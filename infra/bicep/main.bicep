// One relay instance for one single-page app (docs/deployment.md).
//
// Deploy per app with a parameter file from apps/:
//   az deployment sub create --location <region> --parameters infra/bicep/apps/<app>.bicepparam
// or with azd (azure.yaml; the azd environment picks the parameter file, see
// docs/deployment.md).
//
// Creates: resource group, user-assigned identity, storage for the Functions
// host (shared keys off), Log Analytics + Application Insights (local auth off),
// Flex Consumption plan + Python function app behind Easy Auth, and the role
// assignments the identity needs.
//
// The template is subscription-scoped only to create the resource group: that
// is the one subscription-scope resource it writes (asserted by tests/infra).
// Subscription-wide settings, such as the Defender for Cloud AI plan, are
// deployed once per subscription by its security admin
// (subscription/defender-ai.bicep, see docs/deployment.md).
targetScope = 'subscription'

// ---- deployment -----------------------------------------------------------------

@minLength(1)
@maxLength(40)
@description('Environment (instance) name, e.g. the app name. With azd: the azd environment name. Seeds every resource name.')
param environmentName string

@minLength(1)
@description('Azure region of the relay (must offer Flex Consumption).')
param location string

@description('Resource group to create; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('Extra tags for every resource.')
param tags object = {}

@allowed([
  'production'
  'development'
])
@description('production (default) accepts only https:// SPA origins of real hosts; a development parameter file may also list http:// and localhost origins.')
param environmentType string = 'production'

// ---- the application ------------------------------------------------------------

@minLength(1)
@maxLength(128)
@description('APPLICATION_NAME: how Defender for Cloud and Purview name this app in user_security_context.')
param applicationName string

@minLength(1)
@description('Origins of the SPA (https://host[:port]); used for CORS and post-login redirects. Never a wildcard; http:// and localhost only with environmentType development.')
param spaOrigins array

@description('Client ID of the SPA app registration: the application whose tokens the relay accepts (with the login flow, also the relay API registration itself).')
param spaClientId string

// ---- Microsoft Entra ID (Easy Auth) ------------------------------------------------

@description('Client ID of the relay API app registration (the token audience).')
param relayApiClientId string

@description('Tenant of the app registrations and of the users.')
param tenantId string = tenant().tenantId

@description('Scope the SPA requests for the relay (exposed by the relay API app registration).')
param relayApiScope string = 'api://${relayApiClientId}/user_impersonation'

@description('Audiences Easy Auth and the relay accept: the App ID URI (v1 tokens) and the client ID (v2 tokens).')
param allowedAudiences array = [
  'api://${relayApiClientId}'
  relayApiClientId
]

@description('Tenants whose users may call the relay (RELAY_ALLOWED_TENANTS). Default: the home tenant only.')
param allowedTenants array = [
  tenantId
]

@description('App roles of which the caller needs one (RELAY_REQUIRED_ROLES). Empty = any user the SPA can sign in.')
param requiredRoles array = [
  'Relay.User'
]

@description('Accept app-only tokens (RELAY_ALLOW_APP_TOKENS).')
param allowAppTokens bool = false

@description('Enable the browser login flow (/.auth/login/aad and its session cookie). Easy Auth redeems the code with a federated identity credential of the relay identity, never a client secret: run infra/scripts/register-entra-apps.sh --login-flow first.')
param enableLoginFlow bool = false

// ---- Azure OpenAI ------------------------------------------------------------------

@description('Resource ID of the existing Azure OpenAI (or AI Services) account; may be in another resource group or subscription.')
param openAiResourceId string

@description('AZURE_OPENAI_ENDPOINT, e.g. https://myaoai.openai.azure.com')
param openAiEndpoint string

@minLength(1)
@description('Deployments this instance allows (AZURE_OPENAI_DEPLOYMENTS); the first is the default.')
param openAiDeployments array

@description('AZURE_OPENAI_API_VERSION: v1 or a dated version.')
param openAiApiVersion string = 'v1'

@allowed([
  'managed-identity'
  'key'
])
@description('AZURE_OPENAI_AUTH. managed-identity (default) needs no secret at all.')
param openAiAuthMode string = 'managed-identity'

@description('Resource ID of an existing Key Vault with the Azure RBAC permission model (key mode only).')
param keyVaultResourceId string = ''

@description('Name of the Key Vault secret that holds the Azure OpenAI key (key mode).')
param openAiKeySecretName string = ''

// ---- relay limits and network ---------------------------------------------------------

@description('RELAY_CLIENT_IP_MODE: app-service, front-door or xff:N. front-door and xff:N lock the site to that front end.')
param clientIpMode string = 'app-service'

@description('RELAY_FRONT_DOOR_ID (front-door mode): the Front Door profile ID; the site accepts only requests Front Door forwards with it.')
param frontDoorId string = ''

@description('xff:N mode: address ranges (CIDR) of the reverse proxy in front of the relay, the only sources the site accepts.')
param trustedProxyIpRanges array = []

@description('front-door and xff:N modes: address ranges (CIDR) allowed to reach the scm (deployment) site, e.g. the deployer or CI runner. Empty: code deployment is closed too.')
param scmAllowedIpRanges array = []

@minValue(1024)
@maxValue(104857600) // 100 MiB, the most the relay accepts at start-up
param maxBodyBytes int = 4194304

@minValue(1)
@maxValue(1000000)
param maxTokens int = 4096

@minValue(1)
@maxValue(128)
param maxN int = 1

@minValue(1)
@maxValue(600)
param upstreamTimeoutSeconds int = 120

@description('RELAY_UPSTREAM_CONNECTIONS: connections to Azure OpenAI per instance (0: one per concurrent request of the instance, its HTTP concurrency); a request that finds none free waits busyTimeoutSeconds, then gets 503.')
@minValue(0)
param upstreamConnections int = 0

@description('RELAY_USER_MAX_IN_FLIGHT: requests one user may have in flight on an instance; one more gets 429 user_concurrency_exceeded, so no user holds the instance\'s connections to Azure OpenAI from everyone else.')
@minValue(1)
@maxValue(100000)
param userMaxInFlight int = 16

@description('RELAY_BUSY_TIMEOUT_S: how long a request waits for a free upstream connection.')
@minValue(0)
@maxValue(600)
param busyTimeoutSeconds int = 5

@description('RELAY_CALLER_WRITE_TIMEOUT_S: a stream whose caller reads nothing for this long is ended, and Azure OpenAI with it.')
@minValue(1)
@maxValue(3600)
param callerWriteTimeoutSeconds int = 30

@description('RELAY_STREAM_KEEPALIVE_S: a stream sends an SSE comment after this long without a byte from Azure OpenAI (a reasoning model thinking).')
@minValue(1)
@maxValue(120)
param streamKeepAliveSeconds int = 15

@description('RELAY_ALLOW_STORE: allow store: true (stored completions keep conversations in the shared Azure OpenAI resource).')
param allowStore bool = false

@description('RELAY_ALLOWED_SERVICE_TIERS: service_tier values callers may ask for; priority processing costs more.')
param allowedServiceTiers array = [
  'auto'
  'default'
  'flex'
]

@description('RELAY_EXPOSE_CACHED_TOKENS: show callers usage.prompt_tokens_details.cached_tokens, which tells whether others sent the same prompt prefix.')
param exposeCachedTokens bool = false

// ---- block list and token budgets (docs/blocklist.md) --------------------------------

@description('RELAY_BLOCKLIST_ENABLED: refuse callers on the block list (403 user_blocked).')
param blocklistEnabled bool = true

@minValue(1)
@maxValue(3600)
@description('RELAY_BLOCKLIST_REFRESH_S: a new block takes effect on every instance within this many seconds.')
param blocklistRefreshSeconds int = 30

@allowed([
  'fail-closed'
  'fail-open'
])
@description('RELAY_BLOCKLIST_COLD_START: what an instance that has never read the block list does (SECURITY.md).')
param blocklistColdStart string = 'fail-closed'

@minValue(0)
@description('RELAY_BUDGET_USER_TOKENS_PER_MINUTE (0: no limit).')
param userTokensPerMinute int = 0

@minValue(0)
@description('RELAY_BUDGET_USER_TOKENS_PER_DAY (0: no limit).')
param userTokensPerDay int = 0

@minValue(0)
@description('RELAY_BUDGET_TENANT_TOKENS_PER_DAY (0: no limit).')
param tenantTokensPerDay int = 0

@minValue(1)
@maxValue(60)
@description('RELAY_BUDGET_FLUSH_S: how often each instance writes its token counts and reads the shared totals.')
param budgetFlushSeconds int = 5

@description('Wire Defender for Cloud AI alerts to a Logic App that blocks the alert\'s end user and IP address.')
param enableDefenderBlocklistAutomation bool = false

@minValue(1)
@maxValue(8784)
@description('How long a block written from a Defender for Cloud alert lasts, in hours.')
param defenderBlockHours int = 24

@description('With the automation: where Defender for Cloud keeps this subscription\'s alerts (ascLocation, e.g. westeurope; `az security location list`).')
param defenderAlertLocation string = ''

@description('Alert types the automation acts on; empty: the jailbreak and user-sent phishing URL types (docs/blocklist.md, "From Defender for Cloud").')
param defenderAlertTypes array = []

@allowed([
  'Informational'
  'Low'
  'Medium'
  'High'
])
@description('Alerts below this severity block no one.')
param defenderMinimumSeverity string = 'Medium'

@description('Let the automation block the alert\'s IP addresses too (off: only its users).')
param defenderBlockAddresses bool = false

// ---- hosting ------------------------------------------------------------------------

@description('Python version of the Functions runtime: 3.13 runs the worker library pinned in requirements.txt (azure-functions-runtime).')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string = '3.13'

// The platform accepts 1 to 1,000 ("the lowest maximum instance count value is 1",
// https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out). Every Flex
// Consumption app of the subscription in this region draws on one shared compute quota, so the ceilings of all
// relays there together can exceed what the quota lets them run at once
// (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#regional-subscription-memory-quotas).
@description('Flex Consumption scale-out ceiling: users served at once ≈ maximumInstanceCount × the HTTP concurrency of an instance (httpPerInstanceConcurrency, or its default by instance size), within the regional compute quota all Flex Consumption apps of the subscription share.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

// Measured on a 2-vCPU machine (python -m bench --capacity-only --runtime worker, with and without --telemetry;
// bench/results/capacity-worker*.json): the relay in the real Python worker behind the Functions host stand-in, both
// on one CPU, kept the p99 it adds within 10 ms up to 400 concurrent streams and 160 non-streamed calls in flight
// with Application Insights on, as deployed (400 and 250 with it off); the platform floor (a bare function app)
// beside it had 250 and 160 (320 and 200): the platform sets most of the knee. Across runs on that machine the knees
// moved between 80 and 400, and 100 was within capacity in every run but one (10.4 ms at 100 calls). A Flex
// Consumption instance has 0.25 CPU
// cores at 512 MB, 1 at 2,048 MB and 2 at 4,096 MB
// (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-sizes). Defaults: 100 at 2,048 MB,
// about 60 % of the lower committed knee, for that spread; a quarter of that at
// 512 MB (a quarter of the CPU); at 4,096 MB the same as at 2,048 MB, since the one Python worker process runs on
// one core at most (a lower bound, not measured).
@description('Concurrent HTTP requests (open streams included) per instance; Flex Consumption defaults to 1 for Python. 0: from the measured capacity of one instance of instanceMemoryMB (25 at 512 MB, 100 at 2,048 and 4,096 MB; README.md, Sizing).')
@minValue(0)
@maxValue(1000)
param httpPerInstanceConcurrency int = 0

@description('Always-ready instances for the HTTP functions (billed while idle); 0: scale from zero.')
@minValue(0)
@maxValue(100)
param alwaysReadyInstances int = 0

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

var instanceConcurrency = (httpPerInstanceConcurrency > 0) ? httpPerInstanceConcurrency : ((instanceMemoryMB == 512) ? 25 : 100)

// ---- names ---------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, {
  'azd-env-name': environmentName
  'relay-application': applicationName
})
var rgName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var functionAppName = 'func-${environmentName}-${take(resourceToken, 6)}'
var deploymentContainerName = 'app-package-${take(resourceToken, 8)}'
// Suffix of every nested deployment name. Some of them run in resource groups
// shared by several relays (the Azure OpenAI and Key Vault groups), where a
// fixed name would let two apps provisioning at once overwrite each other's
// deployment. environmentName is at most 40 characters; take(..., 64) keeps
// every name within the ARM limit.
var deploymentSuffix = '${environmentName}-${take(resourceToken, 6)}'

// /subscriptions/<sub>/resourceGroups/<rg>/providers/<ns>/<type>/<name>
var openAiParts = split(openAiResourceId, '/')
var keyVaultParts = split(keyVaultResourceId, '/')
var isKeyMode = openAiAuthMode == 'key'
// Fail fast: key mode reads the Azure OpenAI key from Key Vault, so without
// the vault and the secret name the deployment must stop at validation instead
// of producing a relay that fails every call. The guard looks the message up as
// a property of an empty object, which ARM refuses with "The language
// expression property '<message>' doesn't exist", and ARM's if() (a Bicep
// ternary) evaluates only the branch it takes, so it fires only when the
// settings are incomplete. It works with every Bicep version; fail() would read
// better but needs Bicep CLI 0.33.93+ and the pycep parser checkov uses cannot
// parse it. Everything that uses the vault (the Key Vault role module and the
// relay's key-mode settings) goes through keyVaultName.
// https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-logical#if
var keyModeIncomplete = isKeyMode && (empty(keyVaultResourceId) || empty(openAiKeySecretName))
var keyModeIncompleteError = 'Key mode (openAiAuthMode = key) needs keyVaultResourceId (an RBAC-mode Key Vault) and openAiKeySecretName (the secret that holds the Azure OpenAI key).'
var keyVaultName = keyModeIncomplete ? any({})[keyModeIncompleteError] : (empty(keyVaultResourceId) ? '' : last(keyVaultParts))
var keyVaultUrl = empty(keyVaultName) ? '' : 'https://${keyVaultName}${environment().suffixes.keyvaultDns}'
// Guarded so that a conditional module's scope never indexes an empty ID.
var keyVaultSubscriptionId = empty(keyVaultResourceId) ? subscription().subscriptionId : keyVaultParts[2]
var keyVaultResourceGroupName = empty(keyVaultResourceId) ? rgName : keyVaultParts[4]
var openIdIssuer = '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
// The login flow's federated credential lets Easy Auth present the relay identity's token for the relay API
// registration, and Entra ID accepts that only when the registration and the identity are in the same tenant
// (https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity).
// The identity is created in the deployment's tenant, so with the login flow tenantId must be that tenant; the
// same guard as key mode refuses anything else at validation.
var loginFlowTenantMismatch = enableLoginFlow && (toLower(tenantId) != toLower(tenant().tenantId))
var loginFlowTenantMismatchError = 'enableLoginFlow needs tenantId to be the tenant of this deployment (${tenant().tenantId}), where the relay identity its federated credential trusts is created; tenantId is ${tenantId}.'
var loginFlow = loginFlowTenantMismatch ? any({})[loginFlowTenantMismatchError] : enableLoginFlow
// CORS (and, with the login flow, post-login redirects) trust these origins
// with users' tokens and session cookies. A wildcard would trust every site, so
// it is refused everywhere; http:// and loopback origins belong to development
// machines, so production refuses them too, with the same guard as key mode.
var isProduction = environmentType == 'production'
var refusedOrigins = filter(spaOrigins, origin => contains(origin, '*') || (isProduction && ((!startsWith(origin, 'https://')) || (toLower(origin) == 'https://localhost') || startsWith(origin, 'https://localhost:') || startsWith(origin, 'https://127.') || startsWith(origin, 'https://[::1]'))))
var refusedOriginsError = 'spaOrigins refused for environmentType ${environmentType}: ${join(refusedOrigins, ', ')}. Use https://host[:port] origins without wildcards; http:// and localhost origins only in a parameter file that sets environmentType to development.'
var corsOrigins = empty(refusedOrigins) ? spaOrigins : any({})[refusedOriginsError]
// front-door and xff:N trust a header only the front end may set, so the site
// must accept nothing but that front end (functionapp.bicep restricts it); a
// lockdown without the front end's identity is refused.
var frontDoorIncomplete = (clientIpMode == 'front-door') && empty(frontDoorId)
var proxyIncomplete = startsWith(clientIpMode, 'xff:') && empty(trustedProxyIpRanges)
var frontDoorIncompleteError = 'clientIpMode front-door needs frontDoorId (the Front Door profile ID): the site admits only requests from Azure Front Door that carry it.'
var proxyIncompleteError = 'clientIpMode ${clientIpMode} needs trustedProxyIpRanges (the CIDR ranges of the proxy in front of the relay): the site admits only those sources.'
var relayClientIpMode = frontDoorIncomplete ? any({})[frontDoorIncompleteError] : (proxyIncomplete ? any({})[proxyIncompleteError] : clientIpMode)

// ---- resources ------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = {
  name: take('relay-identity-${deploymentSuffix}', 64)
  scope: rg
  params: {
    name: 'id-${environmentName}-${take(resourceToken, 6)}'
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: take('relay-monitoring-${deploymentSuffix}', 64)
  scope: rg
  params: {
    logAnalyticsName: 'log-${environmentName}-${take(resourceToken, 6)}'
    applicationInsightsName: 'appi-${environmentName}-${take(resourceToken, 6)}'
    location: location
    tags: allTags
    publisherPrincipalId: identity.outputs.principalId
    telemetryRetentionInDays: telemetryRetentionInDays
    dailyQuotaGb: logDailyQuotaGb
    resourceContextLogAccess: resourceContextLogAccess
  }
}

module storage 'modules/storage.bicep' = {
  name: take('relay-storage-${deploymentSuffix}', 64)
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: allTags
    deploymentContainerName: deploymentContainerName
    principalId: identity.outputs.principalId
  }
}

module openAiRole 'modules/openai-role.bicep' = {
  name: take('relay-openai-role-${deploymentSuffix}', 64)
  scope: resourceGroup(openAiParts[2], openAiParts[4])
  params: {
    openAiAccountName: last(openAiParts)
    principalId: identity.outputs.principalId
  }
}

module keyVaultRole 'modules/keyvault-role.bicep' = if (isKeyMode) {
  name: take('relay-keyvault-role-${deploymentSuffix}', 64)
  scope: resourceGroup(keyVaultSubscriptionId, keyVaultResourceGroupName)
  params: {
    keyVaultName: keyVaultName
    secretName: openAiKeySecretName
    principalId: identity.outputs.principalId
  }
}

module relayTables 'modules/blocklist-table.bicep' = {
  name: take('relay-tables-${deploymentSuffix}', 64)
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    principalId: identity.outputs.principalId
  }
}

module tableAccessLog 'modules/table-access-log.bicep' = {
  name: take('relay-table-access-log-${deploymentSuffix}', 64)
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    workspaceId: monitoring.outputs.workspaceId
  }
}

module defenderBlocklist 'modules/defender-blocklist-automation.bicep' = if (enableDefenderBlocklistAutomation) {
  name: take('relay-defender-blocklist-${deploymentSuffix}', 64)
  scope: rg
  params: {
    name: '${environmentName}-${take(resourceToken, 6)}'
    location: location
    tags: allTags
    storageAccountName: storage.outputs.name
    blocklistTableName: relayTables.outputs.blocklistTableName
    blockHours: defenderBlockHours
    openAiResourceId: openAiResourceId
    alertLocation: defenderAlertLocation
    alertTypes: defenderAlertTypes
    minimumSeverity: defenderMinimumSeverity
    blockAddresses: defenderBlockAddresses
  }
}

// ---- the Responses API: a Foundry project (README.md, "The Responses API") -----------------

@description('AZURE_AI_PROJECT_ENDPOINT from an existing Foundry project, by resource ID (/subscriptions/.../providers/Microsoft.CognitiveServices/accounts/<account>/projects/<project>); the relay identity gets Azure AI User on it. Empty: no Responses API, unless createFoundryProject.')
param foundryProjectResourceId string = ''

@description('Create an AIServices account and its project in the relay\'s resource group for the Responses API (deploy models into the account yourself, named as in openAiDeployments).')
param createFoundryProject bool = false

@description('RELAY_RESPONSES_STORE: responses are stored in the project unless the caller sends store: false (SECURITY.md, what is kept where).')
param responsesStore bool = true

@description('RELAY_RESPONSES_ALLOWED_TOOLS: server-side tools callers may use (web_search, file_search, code_interpreter, mcp, ...); none by default.')
param responsesAllowedTools array = []

var foundryProjectParts = split(foundryProjectResourceId, '/')
var useFoundryProject = createFoundryProject || !empty(foundryProjectResourceId)
var foundryBothGiven = createFoundryProject && !empty(foundryProjectResourceId)
var foundryBothGivenError = 'Give either createFoundryProject or foundryProjectResourceId, not both.'
var foundryCreate = foundryBothGiven ? any({})[foundryBothGivenError] : createFoundryProject

module foundryProject 'modules/foundry-project.bicep' = if (useFoundryProject) {
  name: take('relay-foundry-project-${deploymentSuffix}', 64)
  scope: resourceGroup(createFoundryProject ? subscription().subscriptionId : foundryProjectParts[2], createFoundryProject ? rgName : foundryProjectParts[4])
  dependsOn: [
    rg
  ]
  params: {
    create: foundryCreate
    accountName: createFoundryProject ? 'ais-${environmentName}-${take(resourceToken, 6)}' : foundryProjectParts[8]
    projectName: createFoundryProject ? 'relay' : foundryProjectParts[10]
    location: location
    tags: allTags
    principalId: identity.outputs.principalId
  }
}

// The key that binds Responses ids to their caller: made by the relay, kept in this table (never in a setting).
module responsesTable 'modules/responses-table.bicep' = if (useFoundryProject) {
  name: take('relay-responses-table-${deploymentSuffix}', 64)
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    principalId: identity.outputs.principalId
  }
}

var responsesSettings = {
  projectEndpoint: useFoundryProject ? foundryProject!.outputs.endpoint : ''
  table: useFoundryProject ? responsesTable!.outputs.tableName : 'relayresponses'
  store: responsesStore
  allowedTools: responsesAllowedTools
}

module relay 'modules/functionapp.bicep' = {
  name: take('relay-functionapp-${deploymentSuffix}', 64)
  scope: rg
  // The role assignments the relay needs before its first request; storage and the tables are
  // dependencies already, through their outputs below.
  dependsOn: [
    openAiRole
    keyVaultRole
    foundryProject
  ]
  params: {
    name: functionAppName
    planName: 'plan-${environmentName}-${take(resourceToken, 6)}'
    location: location
    tags: allTags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageBlobUri: storage.outputs.blobEndpoint
    hostStorageTableUri: storage.outputs.tableEndpoint
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appInsightsConnectionString: monitoring.outputs.connectionString
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    httpPerInstanceConcurrency: instanceConcurrency
    alwaysReadyInstances: alwaysReadyInstances
    openAiEndpoint: openAiEndpoint
    openAiApiVersion: openAiApiVersion
    openAiDeployments: openAiDeployments
    openAiAuthMode: openAiAuthMode
    keyVaultUrl: isKeyMode ? keyVaultUrl : ''
    openAiKeySecretName: isKeyMode ? openAiKeySecretName : ''
    applicationName: applicationName
    allowedTenants: allowedTenants
    requiredRoles: requiredRoles
    allowedAudiences: allowedAudiences
    allowAppTokens: allowAppTokens
    clientIpMode: relayClientIpMode
    frontDoorId: frontDoorId
    trustedProxyIpRanges: trustedProxyIpRanges
    scmAllowedIpRanges: scmAllowedIpRanges
    maxBodyBytes: maxBodyBytes
    maxTokens: maxTokens
    maxN: maxN
    upstreamTimeoutSeconds: upstreamTimeoutSeconds
    // Each request holds at most one connection to Azure OpenAI at a time: a pool as large as the
    // instance's HTTP concurrency never makes a request wait.
    upstreamConnections: (upstreamConnections > 0) ? upstreamConnections : instanceConcurrency
    busyTimeoutSeconds: busyTimeoutSeconds
    userMaxInFlight: userMaxInFlight
    callerWriteTimeoutSeconds: callerWriteTimeoutSeconds
    streamKeepAliveSeconds: streamKeepAliveSeconds
    allowStore: allowStore
    allowedServiceTiers: allowedServiceTiers
    exposeCachedTokens: exposeCachedTokens
    responses: responsesSettings
    blocklistEnabled: blocklistEnabled
    blocklistRefreshSeconds: blocklistRefreshSeconds
    blocklistColdStart: blocklistColdStart
    userTokensPerMinute: userTokensPerMinute
    userTokensPerDay: userTokensPerDay
    tenantTokensPerDay: tenantTokensPerDay
    budgetFlushSeconds: budgetFlushSeconds
    blocklistTableName: relayTables.outputs.blocklistTableName
    budgetTableName: relayTables.outputs.budgetTableName
    authClientId: relayApiClientId
    authOpenIdIssuer: openIdIssuer
    allowedClientApplications: [
      spaClientId
    ]
    spaOrigins: corsOrigins
    enableLoginFlow: loginFlow
  }
}

// ---- the SOC pack, the control alerts and the evidence they read (docs/telemetry.md) ----------

@minValue(30)
@maxValue(730)
@description('Days the relay\'s records and the block-list table\'s access log are kept in the workspace, then deleted (docs/telemetry.md, "Retention, access and purge").')
param telemetryRetentionInDays int = 90

@minValue(-1)
@description('Daily ingestion cap of the workspace in GB (-1: none); past it Azure Monitor drops data until the next reset.')
param logDailyQuotaGb int = 10

@description('Let anyone who may read the Application Insights resource read the relay\'s records (resource-context access). Off: the workspace\'s own rights (or table-level roles) decide.')
param resourceContextLogAccess bool = false

@description('Resource ID of an existing action group the control alerts notify; empty: the alerts fire without notifying anyone.')
param alertActionGroupId string = ''

@description('Resource ID of the workspace the workbook reads Defender for Cloud\'s AI alerts (SecurityAlert) from, e.g. the SOC\'s Microsoft Sentinel workspace; empty: the relay\'s own.')
param securityAlertWorkspaceId string = ''

module socPack 'modules/soc-pack.bicep' = {
  name: take('relay-soc-pack-${deploymentSuffix}', 64)
  scope: rg
  params: {
    workspaceName: monitoring.outputs.workspaceName
    location: location
    tags: allTags
    workbookName: 'Relay ${environmentName}: users, refusals and Defender AI alerts'
    alertWorkspaceId: securityAlertWorkspaceId
  }
}

module relayAlerts 'modules/relay-alerts.bicep' = {
  name: take('relay-alerts-${deploymentSuffix}', 64)
  scope: rg
  // The alert queries call the saved functions (RelayRequests()).
  dependsOn: [
    socPack
  ]
  params: {
    workspaceId: monitoring.outputs.workspaceId
    location: location
    tags: allTags
    name: '${environmentName}-${take(resourceToken, 6)}'
    actionGroupId: alertActionGroupId
    blocklistEnabled: blocklistEnabled
    // Three missed refreshes, plus the minute a metric point takes to be exported.
    blocklistMaxAgeSeconds: (blocklistRefreshSeconds * 3) + 60
    budgetsEnabled: (userTokensPerMinute > 0) || (userTokensPerDay > 0) || (tenantTokensPerDay > 0)
    automationWorkflowId: enableDefenderBlocklistAutomation ? defenderBlocklist.outputs.workflowId : ''
  }
}

@description('Resource ID of the relay\'s Log Analytics workspace: appWorkspaceId of the SOC\'s Sentinel rule (infra/bicep/sentinel/ai-alert-user-activity.bicep).')
output RELAY_WORKSPACE_ID string = monitoring.outputs.workspaceId

// ---- outputs: what the SPA needs (no secrets here) -------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = relay.outputs.name

@description('Object (principal) ID of the relay identity: the subject of the federated identity credential of the login flow (register-entra-apps.sh --identity-principal-id).')
output RELAY_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

@description('Base URL of the relay.')
output RELAY_URL string = relay.outputs.url

@description('OpenAI SDK baseURL for the SPA.')
output RELAY_OPENAI_BASE_URL string = '${relay.outputs.url}/api/v1'

@description('Scope the SPA requests with MSAL and sends as a bearer token.')
output RELAY_API_SCOPE string = relayApiScope

@description('Everything the SPA needs to call this relay, as one object.')
output SPA_CONFIG object = {
  relayUrl: relay.outputs.url
  openAiBaseUrl: '${relay.outputs.url}/api/v1'
  authority: '${environment().authentication.loginEndpoint}${tenantId}'
  tenantId: tenantId
  clientId: spaClientId
  scopes: [
    relayApiScope
  ]
  models: openAiDeployments
  defaultModel: first(openAiDeployments)
  allowedOrigins: corsOrigins
}
