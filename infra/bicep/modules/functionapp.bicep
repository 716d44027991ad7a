// The relay: a Python function app on a Flex Consumption plan, behind
// App Service Authentication (Easy Auth v2) with Microsoft Entra ID.
//
// Security posture (asserted by tests/infra):
// - Easy Auth required for every path except /api/healthz; unauthenticated
//   callers get 401 (never a redirect, never anonymous).
// - HTTPS only, TLS 1.2 minimum, FTP and SCM basic-auth publishing disabled.
// - No key or secret in app settings: the relay reaches Azure OpenAI, Key Vault,
//   storage and Application Insights with its user-assigned identity, and the
//   optional login flow redeems its codes with a federated identity credential
//   of that identity instead of a client secret.
// - CORS lists the SPA origins only, never '*' (main.bicep refuses http:// and
//   localhost origins in production).
// - In front-door and xff:N modes the site admits only that front end and the
//   scm site only the deployers; everything else is denied.

// ---- hosting -----------------------------------------------------------------

@description('Function app name (also the default host name prefix).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('azd service name from azure.yaml; azd finds the app by this tag.')
param azdServiceName string = 'relay'

@description('Resource ID of the user-assigned managed identity.')
param identityId string

@description('Client ID of the user-assigned managed identity.')
param identityClientId string

@description('Blob service URI of the host storage account (identity-based AzureWebJobsStorage).')
param hostStorageBlobUri string

@description('Table service URI of the host storage account: RELAY_TABLE_ENDPOINT, the block list and budget tables.')
param hostStorageTableUri string

@description('URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

@description('Application Insights connection string (local auth is disabled on the component).')
param appInsightsConnectionString string

@description('Python version of the Functions runtime.')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string = '3.13'

@description('Flex Consumption scale-out ceiling (main.bicep documents the bounds).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption instance size.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Concurrent HTTP requests per instance (Flex Consumption defaults to 1 for Python); main.bicep gives the measured default.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int

@description('Always-ready instances for the HTTP functions.')
@minValue(0)
param alwaysReadyInstances int = 0

// ---- relay configuration (README.md, Configuration) ---------------------------------

@description('Azure OpenAI endpoint, e.g. https://myaoai.openai.azure.com')
param openAiEndpoint string

@description('Azure OpenAI API version: v1 or a dated version.')
param openAiApiVersion string = 'v1'

@description('Deployments this instance allows; the first is the default.')
@minLength(1)
param openAiDeployments array

@description('How the relay authenticates to Azure OpenAI.')
@allowed([
  'managed-identity'
  'key'
])
param openAiAuthMode string = 'managed-identity'

@description('Key Vault URL (key mode).')
param keyVaultUrl string = ''

@description('Name of the Key Vault secret holding the Azure OpenAI key (key mode).')
param openAiKeySecretName string = ''

@description('Sent to Azure OpenAI as user_security_context.application_name.')
param applicationName string

@description('Tenant GUIDs whose users may call the relay; empty = any tenant Easy Auth accepts.')
param allowedTenants array = []

@description('App roles of which the caller needs one; empty = none required.')
param requiredRoles array = []

@description('Accepted token audiences (Easy Auth and the relay).')
@minLength(1)
param allowedAudiences array

@description('Accept app-only (client credentials) tokens.')
param allowAppTokens bool = false

@description('How the relay finds the client IP: app-service, front-door or xff:N.')
param clientIpMode string = 'app-service'

@description('Front Door profile ID (front-door mode).')
param frontDoorId string = ''

@description('xff:N mode: CIDR ranges of the reverse proxy in front of the relay.')
param trustedProxyIpRanges array = []

@description('front-door and xff:N modes: CIDR ranges allowed to reach the scm (deployment) site.')
param scmAllowedIpRanges array = []

// main.bicep documents these, gives their defaults and always passes them (README.md, Configuration).
param maxBodyBytes int
param maxTokens int
param maxN int
param upstreamTimeoutSeconds int
param upstreamConnections int
param busyTimeoutSeconds int
param userMaxInFlight int
param callerWriteTimeoutSeconds int
param streamKeepAliveSeconds int
param allowStore bool
param allowedServiceTiers array
param exposeCachedTokens bool

// The Responses API (README.md, "The Responses API"): projectEndpoint empty turns it off; table holds the key
// that binds Responses ids to their caller (responses-table.bicep).
param responses object = {
  projectEndpoint: ''
  table: 'relayresponses'
  store: true
  allowedTools: []
}

// Block list and token budgets (docs/blocklist.md); their tables are in the host storage account
// (RELAY_TABLE_ENDPOINT is its table service, hostStorageTableUri), created by blocklist-table.bicep.
param blocklistEnabled bool
param blocklistRefreshSeconds int
param blocklistColdStart string
param userTokensPerMinute int
param userTokensPerDay int
param tenantTokensPerDay int
param budgetFlushSeconds int
param blocklistTableName string
param budgetTableName string

// ---- Easy Auth ------------------------------------------------------------------------

@description('Client (application) ID of the relay API app registration.')
param authClientId string

@description('OpenID issuer, https://login.microsoftonline.com/<tenant>/v2.0')
param authOpenIdIssuer string

@description('Client IDs of the applications (the SPA) allowed to call the relay. With the login flow the relay registration itself (authClientId) is added.')
@minLength(1)
param allowedClientApplications array

@description('SPA origins for CORS (and post-login redirects when the login flow is on).')
@minLength(1)
param spaOrigins array

@description('Enable the browser login flow (/.auth/login/aad, session cookie). The relay API registration must trust the relay identity with a federated identity credential.')
param enableLoginFlow bool = false

// ---- app settings ------------------------------------------------------------------

var isKeyMode = openAiAuthMode == 'key'
// Easy Auth's "client secret setting name" that makes it use a federated
// identity credential instead of a secret: the app setting of that name holds
// the client ID of the user-assigned identity whose token Easy Auth presents as
// the client assertion when it redeems the login flow's authorization code.
// https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-managed-identity-instead-of-a-secret-preview
var ficAssertionSettingName = 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'

var baseAppSettings = [
  // Functions host: identity-based storage (shared keys are off on the account),
  // addressed by the account's own service URI rather than by its name, so the
  // host does not assume the public cloud's DNS suffix: the same settings work
  // in sovereign clouds and with custom DNS. Blob only, like the identity's
  // role (Storage Blob Data Owner, storage.bicep): an app with HTTP triggers
  // only needs no queue or table service for its host, and a service URI the
  // identity holds no role on would fail at the host's first use of it.
  // https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: hostStorageBlobUri
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  // Application Insights with Entra authentication (local auth disabled). In host.json's "telemetryMode":
  // "OpenTelemetry" the host builds its exporters' ManagedIdentityCredential from the authentication string
  // (azure-functions-host, OpenTelemetryConfigurationExtensions.cs, GetTokenCredential).
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  // The worker attaches each invocation's trace context and tells the host it exports its own telemetry, so
  // the host does not forward the relay's log lines a second time; the relay configures its exporter with the
  // managed identity itself (shared/azure_monitor.py), which PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY would
  // not (https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto).
  {
    name: 'PYTHON_ENABLE_OPENTELEMETRY'
    value: 'true'
  }
  // The relay (README.md, Configuration).
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'AZURE_OPENAI_ENDPOINT'
    value: openAiEndpoint
  }
  {
    name: 'AZURE_OPENAI_API_VERSION'
    value: openAiApiVersion
  }
  {
    name: 'AZURE_OPENAI_DEPLOYMENTS'
    value: join(openAiDeployments, ',')
  }
  {
    name: 'AZURE_OPENAI_AUTH'
    value: openAiAuthMode
  }
  {
    name: 'APPLICATION_NAME'
    value: applicationName
  }
  {
    name: 'RELAY_ALLOWED_TENANTS'
    value: join(allowedTenants, ',')
  }
  {
    name: 'RELAY_REQUIRED_ROLES'
    value: join(requiredRoles, ',')
  }
  {
    name: 'RELAY_ALLOWED_AUDIENCES'
    value: join(allowedAudiences, ',')
  }
  {
    name: 'RELAY_ALLOW_APP_TOKENS'
    value: string(allowAppTokens)
  }
  {
    name: 'RELAY_CLIENT_IP_MODE'
    value: clientIpMode
  }
  {
    name: 'RELAY_FRONT_DOOR_ID'
    value: frontDoorId
  }
  {
    name: 'RELAY_MAX_BODY_BYTES'
    value: string(maxBodyBytes)
  }
  {
    name: 'RELAY_MAX_TOKENS'
    value: string(maxTokens)
  }
  {
    name: 'RELAY_MAX_N'
    value: string(maxN)
  }
  {
    name: 'RELAY_UPSTREAM_TIMEOUT_S'
    value: string(upstreamTimeoutSeconds)
  }
  {
    name: 'RELAY_UPSTREAM_CONNECTIONS'
    value: string(upstreamConnections)
  }
  {
    name: 'RELAY_BUSY_TIMEOUT_S'
    value: string(busyTimeoutSeconds)
  }
  {
    name: 'RELAY_USER_MAX_IN_FLIGHT'
    value: string(userMaxInFlight)
  }
  {
    name: 'RELAY_CALLER_WRITE_TIMEOUT_S'
    value: string(callerWriteTimeoutSeconds)
  }
  {
    name: 'RELAY_STREAM_KEEPALIVE_S'
    value: string(streamKeepAliveSeconds)
  }
  {
    name: 'RELAY_ALLOW_STORE'
    value: string(allowStore)
  }
  {
    name: 'RELAY_ALLOWED_SERVICE_TIERS'
    value: join(allowedServiceTiers, ',')
  }
  {
    name: 'RELAY_EXPOSE_CACHED_TOKENS'
    value: string(exposeCachedTokens)
  }
  {
    name: 'AZURE_AI_PROJECT_ENDPOINT'
    value: responses.projectEndpoint
  }
  {
    name: 'RELAY_RESPONSES_TABLE'
    value: responses.table
  }
  {
    name: 'RELAY_RESPONSES_STORE'
    value: string(responses.store)
  }
  {
    name: 'RELAY_RESPONSES_ALLOWED_TOOLS'
    value: join(responses.allowedTools, ',')
  }
  {
    name: 'RELAY_TABLE_ENDPOINT'
    value: hostStorageTableUri
  }
  {
    name: 'RELAY_BLOCKLIST_ENABLED'
    value: string(blocklistEnabled)
  }
  {
    name: 'RELAY_BLOCKLIST_TABLE'
    value: blocklistTableName
  }
  {
    name: 'RELAY_BLOCKLIST_REFRESH_S'
    value: string(blocklistRefreshSeconds)
  }
  {
    name: 'RELAY_BLOCKLIST_COLD_START'
    value: blocklistColdStart
  }
  {
    name: 'RELAY_BUDGET_TABLE'
    value: budgetTableName
  }
  {
    name: 'RELAY_BUDGET_USER_TOKENS_PER_MINUTE'
    value: string(userTokensPerMinute)
  }
  {
    name: 'RELAY_BUDGET_USER_TOKENS_PER_DAY'
    value: string(userTokensPerDay)
  }
  {
    name: 'RELAY_BUDGET_TENANT_TOKENS_PER_DAY'
    value: string(tenantTokensPerDay)
  }
  {
    name: 'RELAY_BUDGET_FLUSH_S'
    value: string(budgetFlushSeconds)
  }
]

// Key mode: where the relay reads the Azure OpenAI key (never the key itself).
var keyModeAppSettings = [
  {
    name: 'AZURE_KEYVAULT_URL'
    value: keyVaultUrl
  }
  {
    name: 'AZURE_OPENAI_KEY_SECRET_NAME'
    value: openAiKeySecretName
  }
]

// Login flow: the identity whose federated credential replaces the client secret.
var loginFlowAppSettings = [
  {
    name: ficAssertionSettingName
    value: identityClientId
  }
]

// Worker indexing, which the HTTP streams (FastAPI) extension needs, is an opt-in below Python 3.13
// (https://learn.microsoft.com/azure/azure-functions/functions-reference-python#http-streams).
var initIndexingAppSettings = (pythonVersion == '3.13') ? [] : [
  {
    name: 'PYTHON_ENABLE_INIT_INDEXING'
    value: '1'
  }
]
var appSettings = concat(baseAppSettings, initIndexingAppSettings, isKeyMode ? keyModeAppSettings : [], enableLoginFlow ? loginFlowAppSettings : [])

// ---- Easy Auth authorization ----------------------------------------------------------

// defaultAuthorizationPolicy.allowedApplications: "only tokens obtained by an
// application specified in the list are accepted" (Easy Auth checks the appid
// or azp claim; a failed check is a 403). Bearer callers get their tokens
// through the SPA registration. The browser login flow signs users in through
// the relay API registration itself (authClientId does the code exchange), so
// its sessions carry that client ID and it must be allowed too - the portal's
// "Allow requests only from this application itself". Without the login flow
// nothing obtains tokens as the relay registration, so it stays off the list.
// https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-built-in-authorization-policy
var allowedApplications = enableLoginFlow ? union(allowedClientApplications, [
  authClientId
]) : allowedClientApplications

// ---- inbound access ----------------------------------------------------------------------

// front-door and xff:N take the client IP from a header only the front end may
// set: a caller reaching *.azurewebsites.net directly could set it too. So in
// those modes the site admits only the front end and denies everything else,
// and the scm (deployment) site, which is not behind the front end, admits only
// scmAllowedIpRanges. Front Door is identified by its backend service tag plus
// its profile ID header, because the tag alone covers every Front Door profile.
// https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions#restrict-access-to-a-specific-azure-front-door-instance
// https://learn.microsoft.com/azure/frontdoor/origin-security
var isFrontDoorMode = clientIpMode == 'front-door'
var isProxyMode = startsWith(clientIpMode, 'xff:')
var lockedDown = isFrontDoorMode || isProxyMode
var frontDoorRules = [
  {
    name: 'azure-front-door'
    description: 'Only this Azure Front Door profile'
    action: 'Allow'
    priority: 100
    tag: 'ServiceTag'
    ipAddress: 'AzureFrontDoor.Backend'
    headers: {
      'x-azure-fdid': [
        frontDoorId
      ]
    }
  }
]
var proxyRules = [for (range, i) in trustedProxyIpRanges: {
  name: 'trusted-proxy-${i}'
  description: 'The reverse proxy in front of the relay'
  action: 'Allow'
  priority: 100 + i
  ipAddress: range
}]
var scmRules = [for (range, i) in scmAllowedIpRanges: {
  name: 'deployment-${i}'
  description: 'Code deployment'
  action: 'Allow'
  priority: 100 + i
  ipAddress: range
}]
var siteRules = isFrontDoorMode ? frontDoorRules : (isProxyMode ? proxyRules : [])

// Easy Auth builds the login flow's redirect URI (https://<host>/.auth/login/aad/callback) from the
// request's host. Behind Front Door that host must be Front Door's: the site's own *.azurewebsites.net
// host admits nothing but Front Door in this mode, so a callback there would be refused. 'Standard' makes
// Easy Auth take the host and scheme from X-Forwarded-Host and X-Forwarded-Proto, which Front Door sends
// (https://learn.microsoft.com/azure/frontdoor/front-door-http-headers-protocol#from-the-front-door-to-the-backend);
// the access restrictions above admit only this Front Door profile, so no caller reaches the site without it,
// and Entra ID sends codes only to the registered callback, so a forged host would receive none.
// Everywhere else no proxy's forwarded host is trusted.
var forwardProxyConvention = (isFrontDoorMode && enableLoginFlow) ? 'Standard' : 'NoProxy'

// ---- resources ------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  //checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption needs always-ready instances (a standing cost per SPA). The relay is stateless; enable it per app if an SLA needs it.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-11-01' = {
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales per request, from zero; there is no fixed worker count (siteConfig.numberOfWorkers) to raise.
  //checkov:skip=CKV_AZURE_213:The App Service health-check eviction works on a fixed instance pool, which Flex Consumption does not have; /api/healthz (excluded from Easy Auth) serves external availability tests instead.
  //checkov:skip=CKV_AZURE_17:Callers authenticate with Entra bearer tokens validated by Easy Auth; browsers (SPAs) cannot present client certificates.
  //checkov:skip=CKV_AZURE_78:Flex Consumption does not support FTPS and lists properties.ftpsState among its deprecated site properties (https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations); FTP and SCM basic-auth publishing are disabled through basicPublishingCredentialsPolicies below.
  //checkov:skip=CKV_AZURE_222:The relay is a public API for browser SPAs; Easy Auth (requireAuthentication, Return401) gates every call.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      ipSecurityRestrictions: siteRules
      ipSecurityRestrictionsDefaultAction: lockedDown ? 'Deny' : 'Allow'
      scmIpSecurityRestrictionsUseMain: false
      scmIpSecurityRestrictions: lockedDown ? scmRules : []
      scmIpSecurityRestrictionsDefaultAction: lockedDown ? 'Deny' : 'Allow'
      cors: {
        allowedOrigins: spaOrigins
        // Bearer tokens need no credentials; the session cookie of the
        // optional login flow does.
        supportCredentials: enableLoginFlow
      }
      appSettings: appSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // Set explicitly: for Python the platform's default is 1, and every open stream would hold a whole instance.
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
        alwaysReady: (alwaysReadyInstances > 0) ? [
          {
            name: 'http'
            instanceCount: alwaysReadyInstances
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// No FTP, no SCM basic auth: deployments use Entra ID (azd / OneDeploy).
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// Easy Auth v2. The relay trusts the X-MS-CLIENT-PRINCIPAL headers only
// because this is on (SECURITY.md, threat 4), so nothing here may be made optional.
resource authSettings 'Microsoft.Web/sites/config@2024-11-01' = {
  //checkov:skip=CKV_AZURE_13:False positive: the check only understands v1 'authsettings' (properties.enabled). This is authsettingsV2 with platform.enabled = true and requireAuthentication = true, asserted by tests/infra.
  //checkov:skip=CKV_AZURE_63:False positive: HTTP logging is a field of the 'web' config, not of authsettingsV2. Requests are logged to Application Insights.
  //checkov:skip=CKV_AZURE_65:False positive: detailed error pages are a 'web' config field (IIS); the relay returns its own JSON errors without stack traces.
  //checkov:skip=CKV_AZURE_66:False positive: failed request tracing is a 'web' config field (IIS); failures are traced in Application Insights.
  //checkov:skip=CKV_AZURE_80:False positive: .NET Framework version is a 'web' config field; the relay runs Python.
  //checkov:skip=CKV_AZURE_88:False positive: Azure Files content shares do not exist on Flex Consumption (deployment is a blob container).
  //checkov:skip=CKV_AZURE_222:The relay is a public API for browser SPAs; this Easy Auth configuration is what gates it.
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
      runtimeVersion: '~1'
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/healthz'
      ]
    }
    httpSettings: {
      requireHttps: true
      routes: {
        apiPrefix: '/.auth'
      }
      forwardProxy: {
        convention: forwardProxyConvention
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: authOpenIdIssuer
          // Only the login flow redeems codes; bearer validation needs no client credential.
          clientSecretSettingName: enableLoginFlow ? ficAssertionSettingName : null
        }
        validation: {
          allowedAudiences: allowedAudiences
          defaultAuthorizationPolicy: {
            allowedApplications: allowedApplications
          }
        }
        login: {
          disableWWWAuthenticate: false
        }
      }
    }
    login: {
      // No token store: the relay needs the caller's identity, not its tokens,
      // and Flex Consumption has no persistent file system for one.
      tokenStore: {
        enabled: false
      }
      allowedExternalRedirectUrls: enableLoginFlow ? spaOrigins : []
      preserveUrlFragmentsForLogins: false
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output url string = 'https://${site.properties.defaultHostName}'
