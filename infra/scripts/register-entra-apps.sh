#!/usr/bin/env bash
# Register the two Microsoft Entra applications one relay instance needs, with
# the Azure CLI and Microsoft Graph (az ad / az rest). Safe to re-run: existing
# registrations (matched by display name) are updated, their IDs kept.
#
#   relay-<app>-api  the relay's API: Easy Auth validates tokens issued for it.
#                    App ID URI api://<clientId>, delegated scope
#                    user_impersonation, app role Relay.User, v2 access tokens,
#                    "assignment required" on its service principal, the SPA
#                    pre-authorized (no consent prompt).
#   relay-<app>-spa  the single-page app: SPA platform with the given redirect
#                    URIs (exactly those: others registered before are removed),
#                    permission to the relay's scope.
#
# Usage:
#   infra/scripts/register-entra-apps.sh --app helpdesk \
#       --spa-origin https://helpdesk.contoso.example [--assign <user-or-group-object-id>]...
#   # a development registration may also list local origins:
#   infra/scripts/register-entra-apps.sh --app helpdesk-dev --environment-type development \
#       --spa-origin https://helpdesk-dev.contoso.example --spa-origin http://localhost:5173
#   # optional browser login flow, once the relay exists (both values are azd outputs;
#   # behind Azure Front Door, --relay-host is the host browsers use, Front Door's):
#   infra/scripts/register-entra-apps.sh --app helpdesk --spa-origin ... --login-flow \
#       --relay-host func-helpdesk-abc123.azurewebsites.net --identity-principal-id <RELAY_IDENTITY_PRINCIPAL_ID>
#
# --environment-type production (the default) refuses http://, wildcard and
# localhost origins, as main.bicep does; development allows http://localhost
# and http://127.0.0.1. The login flow uses no client secret: the relay API
# registration gets a federated identity credential that trusts the relay's
# managed identity, which Easy Auth presents instead of a secret.
#
# Prints the values for infra/bicep/apps/<app>.bicepparam. Needs: az (logged
# in as someone who may create app registrations), python3 (for GUIDs/JSON).
set -euo pipefail

GRAPH="https://graph.microsoft.com/v1.0"
SCOPE_VALUE="user_impersonation"
ROLE_VALUE="Relay.User"
FIC_NAME="easy-auth-login-flow"

app=""
origins=()
assignees=()
login_flow=false
relay_host=""
identity_principal_id=""
environment_type="production"

usage() {
    sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --app) app="$2"; shift 2 ;;
        --spa-origin) origins+=("$2"); shift 2 ;;
        --assign) assignees+=("$2"); shift 2 ;;
        --login-flow) login_flow=true; shift ;;
        --relay-host) relay_host="$2"; shift 2 ;;
        --identity-principal-id) identity_principal_id="$2"; shift 2 ;;
        --environment-type) environment_type="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

die() { echo "register-entra-apps: $*" >&2; exit 1; }

GUID='^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$'
LOOPBACK_HOST='^(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?$'

[[ "$app" =~ ^[a-z0-9][a-z0-9-]{0,39}$ ]] || die "--app must be lowercase letters, digits and '-'"
[[ "$environment_type" == production || "$environment_type" == development ]] \
    || die "--environment-type must be production or development"
[[ ${#origins[@]} -gt 0 ]] || die "give at least one --spa-origin"
for origin in "${origins[@]}"; do
    host="${origin#*://}"
    if [[ "$origin" =~ ^https://[a-z0-9.-]+(:[0-9]+)?$ && ! "$host" =~ $LOOPBACK_HOST ]]; then
        continue
    fi
    if [[ "$environment_type" == development && "$origin" =~ ^https?://(localhost|127\.0\.0\.1)(:[0-9]+)?$ ]]; then
        continue
    fi
    if [[ "$environment_type" == production ]]; then
        die "origin '$origin' is not allowed in a production registration: use https://host[:port] (no wildcard, no localhost); local origins belong to a separate --environment-type development registration"
    fi
    die "origin '$origin' must be https://host[:port] or http://localhost[:port]"
done
if $login_flow; then
    [[ -n "$relay_host" && -n "$identity_principal_id" ]] \
        || die "--login-flow needs --relay-host and --identity-principal-id (azd outputs AZURE_FUNCTION_NAME's host and RELAY_IDENTITY_PRINCIPAL_ID)"
    [[ "$relay_host" =~ ^[a-z0-9.-]+$ && ! "$relay_host" =~ $LOOPBACK_HOST ]] \
        || die "--relay-host must be the relay's host name, e.g. func-helpdesk-abc123.azurewebsites.net"
    [[ "$identity_principal_id" =~ $GUID ]] || die "--identity-principal-id must be the identity's object (principal) ID, a GUID"
    # Audience of the managed identity token exchanged for the registration's token: one per cloud.
    # https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
    cloud="$(az cloud show --query name --output tsv)"
    case "$cloud" in
        AzureCloud) fic_audience="api://AzureADTokenExchange" ;;
        AzureUSGovernment) fic_audience="api://AzureADTokenExchangeUSGov" ;;
        AzureChinaCloud) fic_audience="api://AzureADTokenExchangeChina" ;;
        *) die "no known token exchange audience for the Azure CLI's cloud '$cloud' (az cloud show): the login flow's federated credential needs it" ;;
    esac
fi

new_guid() { python3 -c 'import uuid; print(uuid.uuid4())'; }

# JSON array of strings from the arguments.
json_strings() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"; }

graph_patch() { # <object path> <json body>
    az rest --method PATCH --uri "$GRAPH/$1" --headers "Content-Type=application/json" --body "$2" --output none
}

# Find or create an app registration by display name; prints its appId.
ensure_app() {
    local name="$1" id
    id="$(az ad app list --display-name "$name" --query "[0].appId" --output tsv)"
    if [[ -z "$id" ]]; then
        id="$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg --query appId --output tsv)"
        echo "created app registration $name ($id)" >&2
    else
        echo "updating app registration $name ($id)" >&2
    fi
    echo "$id"
}

ensure_sp() { # <appId>; prints the service principal object ID
    local sp
    sp="$(az ad sp list --filter "appId eq '$1'" --query "[0].id" --output tsv)"
    [[ -n "$sp" ]] || sp="$(az ad sp create --id "$1" --query id --output tsv)"
    echo "$sp"
}

tenant_id="$(az account show --query tenantId --output tsv)"

# ---- the relay API -----------------------------------------------------------------
api_app_id="$(ensure_app "relay-$app-api")"
api_object_id="$(az ad app show --id "$api_app_id" --query id --output tsv)"
scope_id="$(az ad app show --id "$api_app_id" --query "api.oauth2PermissionScopes[?value=='$SCOPE_VALUE'].id | [0]" --output tsv)"
[[ -n "$scope_id" ]] || scope_id="$(new_guid)"
role_id="$(az ad app show --id "$api_app_id" --query "appRoles[?value=='$ROLE_VALUE'].id | [0]" --output tsv)"
[[ -n "$role_id" ]] || role_id="$(new_guid)"

scope_json="{\"id\": \"$scope_id\", \"value\": \"$SCOPE_VALUE\", \"type\": \"User\", \"isEnabled\": true,
  \"adminConsentDisplayName\": \"Use the $app relay\", \"adminConsentDescription\": \"Call Azure OpenAI through the $app relay as the signed-in user.\",
  \"userConsentDisplayName\": \"Use the $app relay\", \"userConsentDescription\": \"Call Azure OpenAI through the $app relay as you.\"}"

graph_patch "applications/$api_object_id" "{
  \"identifierUris\": [\"api://$api_app_id\"],
  \"api\": {\"requestedAccessTokenVersion\": 2, \"oauth2PermissionScopes\": [$scope_json]},
  \"appRoles\": [{\"id\": \"$role_id\", \"value\": \"$ROLE_VALUE\", \"displayName\": \"Relay user\",
    \"description\": \"May call the $app relay.\", \"allowedMemberTypes\": [\"User\"], \"isEnabled\": true}]
}"
api_sp_id="$(ensure_sp "$api_app_id")"
# Only users and groups assigned an app role can get a token for the relay.
az ad sp update --id "$api_sp_id" --set appRoleAssignmentRequired=true --output none

# ---- the SPA -----------------------------------------------------------------------------
spa_app_id="$(ensure_app "relay-$app-spa")"
spa_object_id="$(az ad app show --id "$spa_app_id" --query id --output tsv)"
# The redirect URIs are replaced as a whole: a production run drops the local
# ones an earlier development run may have registered.
previous_uris="$(az ad app show --id "$spa_app_id" --query "spa.redirectUris" --output json)"
python3 -c 'import json, sys
dropped = sorted(set(json.loads(sys.argv[1] or "[]")) - set(sys.argv[2:]))
if dropped:
    print("removed SPA redirect URIs: " + ", ".join(dropped), file=sys.stderr)' "$previous_uris" "${origins[@]}"
graph_patch "applications/$spa_object_id" "{
  \"spa\": {\"redirectUris\": $(json_strings "${origins[@]}")},
  \"requiredResourceAccess\": [{\"resourceAppId\": \"$api_app_id\",
    \"resourceAccess\": [{\"id\": \"$scope_id\", \"type\": \"Scope\"}]}]
}"
ensure_sp "$spa_app_id" >/dev/null

# Pre-authorize the SPA for the scope (the api object is replaced as a whole).
graph_patch "applications/$api_object_id" "{
  \"api\": {\"requestedAccessTokenVersion\": 2, \"oauth2PermissionScopes\": [$scope_json],
    \"preAuthorizedApplications\": [{\"appId\": \"$spa_app_id\", \"delegatedPermissionIds\": [\"$scope_id\"]}]}
}"

# ---- who may use it ----------------------------------------------------------------------
for principal in "${assignees[@]}"; do
    existing="$(az rest --method GET --uri "$GRAPH/servicePrincipals/$api_sp_id/appRoleAssignedTo" \
        --query "value[?principalId=='$principal' && appRoleId=='$role_id'] | length(@)" --output tsv)"
    if [[ "$existing" == "0" ]]; then
        az rest --method POST --uri "$GRAPH/servicePrincipals/$api_sp_id/appRoleAssignedTo" \
            --headers "Content-Type=application/json" --output none \
            --body "{\"principalId\": \"$principal\", \"resourceId\": \"$api_sp_id\", \"appRoleId\": \"$role_id\"}"
        echo "assigned $ROLE_VALUE to $principal" >&2
    fi
done

# ---- optional: Easy Auth browser login flow ----------------------------------------
if $login_flow; then
    graph_patch "applications/$api_object_id" "{
      \"web\": {\"redirectUris\": [\"https://$relay_host/.auth/login/aad/callback\"],
        \"implicitGrantSettings\": {\"enableIdTokenIssuance\": true}}
    }"
    # No client secret: Easy Auth redeems the login flow's codes with a token of
    # the relay's managed identity, which this credential makes the registration
    # trust (issuer: the tenant's v2.0 authority; subject: the identity's
    # object ID; audience: the token exchange of this cloud). The identity and
    # this registration must be in the same tenant: the one az is signed in to,
    # which must be the relay's deployment tenant (main.bicep refuses the login
    # flow with any other tenantId).
    # https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-managed-identity-instead-of-a-secret-preview
    login_endpoint="$(az cloud show --query endpoints.activeDirectory --output tsv)"
    fic_json="$(python3 -c 'import json, sys
print(json.dumps({"name": sys.argv[1], "issuer": sys.argv[2], "subject": sys.argv[3], "audiences": [sys.argv[4]],
                  "description": sys.argv[5]}))' \
        "$FIC_NAME" "${login_endpoint%/}/$tenant_id/v2.0" "$identity_principal_id" "$fic_audience" \
        "Easy Auth login flow of the $app relay: trusts the relay's managed identity")"
    fic_id="$(az ad app federated-credential list --id "$api_app_id" --query "[?name=='$FIC_NAME'].id | [0]" --output tsv)"
    if [[ -n "$fic_id" ]]; then
        az ad app federated-credential update --id "$api_app_id" --federated-credential-id "$fic_id" \
            --parameters "$fic_json" --output none
    else
        az ad app federated-credential create --id "$api_app_id" --parameters "$fic_json" --output none
    fi
    echo "the relay API registration trusts managed identity $identity_principal_id for the login flow (no client secret)" >&2
fi

cat <<OUT

# For infra/bicep/apps/$app.bicepparam:
param relayApiClientId = '$api_app_id'
param spaClientId = '$spa_app_id'
param tenantId = '$tenant_id'
param spaOrigins = $(json_strings "${origins[@]}" | sed "s/\"/'/g")
param environmentType = '$environment_type'

# For the SPA (MSAL): authority https://login.microsoftonline.com/$tenant_id,
# clientId $spa_app_id, scope api://$api_app_id/$SCOPE_VALUE
OUT
