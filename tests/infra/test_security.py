"""The security properties of the templates, read from the parsed
Bicep (structure) and from the templates evaluated with each example app."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep

FA = bicep.parse_bicep(bicep.FUNCTION_APP)
MAIN = bicep.parse_bicep(bicep.MAIN)
APPS = bicep.example_param_files()
APP_IDS = [p.stem for p in APPS]

# Built-in role IDs, from https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
OPENAI_USER_ROLE = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"  # Cognitive Services OpenAI User
STORAGE_BLOB_DATA_OWNER_ROLE = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
MONITORING_METRICS_PUBLISHER_ROLE = "3913510d-42f4-4e42-8a64-420c390055eb"
#: Roles the host storage identity must NOT get: the relay has no queue or table triggers.
STORAGE_QUEUE_DATA_CONTRIBUTOR_ROLE = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR_ROLE = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
#: Easy Auth's client-secret setting name that means "federated credential of this identity".
#: https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-managed-identity-instead-of-a-secret-preview
FIC_ASSERTION_SETTING = "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"
FLEX_DEPRECATIONS_DOC = "https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations"
SECRETISH_NAME = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|CONNECTION_STRING|SAS)(_|$)", re.IGNORECASE)
SECRETISH_VALUE = re.compile(r"AccountKey=|SharedAccessSignature=|[?&]sig=|-----BEGIN|api-key\s*[:=]", re.IGNORECASE)


def _site() -> dict[str, Any]:
    return bicep.one_resource(FA, "Microsoft.Web/sites")


def _auth() -> dict[str, Any]:
    return bicep.one_resource(FA, "Microsoft.Web/sites/config", "authsettingsV2")


# ---- Easy Auth ----------------------------------------------------------------------


def test_easy_auth_is_on_and_required_with_401() -> None:
    props = _auth()["properties"]
    assert "condition" not in _auth(), "Easy Auth must not be conditional"
    assert props["platform"]["enabled"] is True
    validation = props["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert validation["excludedPaths"] == ["/api/healthz"], "/api/healthz must be the only unauthenticated path"
    assert props["httpSettings"]["requireHttps"] is True


def test_easy_auth_uses_only_the_entra_provider_with_audience_checks() -> None:
    providers = _auth()["properties"]["identityProviders"]
    assert set(providers) == {"azureActiveDirectory"}
    aad = providers["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "authClientId"
    assert aad["registration"]["openIdIssuer"] == "authOpenIdIssuer"
    assert aad["validation"]["allowedAudiences"] == "allowedAudiences"
    assert aad["validation"]["defaultAuthorizationPolicy"]["allowedApplications"] == "allowedApplications"
    assert "clientSecret" not in aad["registration"], "a literal client secret must never be in the template"


@pytest.mark.parametrize("login_flow", [False, True], ids=["bearer", "login-flow"])
@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_easy_auth_as_deployed_for_each_app(app: Path, login_flow: bool) -> None:
    overrides = bicep.LOGIN_FLOW_ON if login_flow else {"enableLoginFlow": False}
    _, scope = bicep.module_scope(app, "relay", overrides)
    props = scope.eval(_auth()["properties"])
    main = bicep.main_scope(app, overrides)
    tenant = main.lookup("tenantId")
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["registration"]["clientId"] == main.lookup("relayApiClientId")
    assert aad["registration"]["openIdIssuer"] == f"https://login.microsoftonline.com/{tenant}/v2.0"
    assert aad["validation"]["allowedAudiences"], "Easy Auth must check the audience"
    allowed = aad["validation"]["defaultAuthorizationPolicy"]["allowedApplications"]
    if main.lookup("enableLoginFlow"):
        assert allowed == [main.lookup("spaClientId"), main.lookup("relayApiClientId")]
    else:
        assert allowed == [main.lookup("spaClientId")]
    assert props["globalValidation"]["excludedPaths"] == ["/api/healthz"]
    secret_setting = aad["registration"]["clientSecretSettingName"]
    settings = bicep.relay_app_settings(app, overrides)
    if main.lookup("enableLoginFlow"):
        # The login flow redeems codes with the relay identity's federated
        # credential: the setting names that identity, it holds no secret.
        assert secret_setting == FIC_ASSERTION_SETTING
        assert settings[FIC_ASSERTION_SETTING] == bicep.EXAMPLE_OUTPUTS["identity.outputs.clientId"]
    else:
        assert secret_setting is None, "bearer-only validation needs no client credential"
        assert FIC_ASSERTION_SETTING not in settings
    assert props["login"]["tokenStore"]["enabled"] is False


def _allowed_applications(app: Path, overrides: dict[str, Any]) -> list[str]:
    _, scope = bicep.module_scope(app, "relay", overrides)
    aad = scope.eval(_auth()["properties"])["identityProviders"]["azureActiveDirectory"]
    allowed: list[str] = aad["validation"]["defaultAuthorizationPolicy"]["allowedApplications"]
    return allowed


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_login_flow_sessions_pass_the_allowed_applications_check(app: Path) -> None:
    # Easy Auth accepts only tokens whose appid/azp is in allowedApplications
    # (403 otherwise). Login-flow sessions are obtained by the relay API
    # registration itself, so with the login flow on its client ID must be
    # listed; without it only the SPA may call.
    # https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-built-in-authorization-policy
    main = bicep.main_scope(app)
    spa, relay_api = main.lookup("spaClientId"), main.lookup("relayApiClientId")
    assert _allowed_applications(app, bicep.LOGIN_FLOW_ON) == [spa, relay_api]
    assert _allowed_applications(app, {"enableLoginFlow": False}) == [spa]


# ---- transport ----------------------------------------------------------------------------


def _tls(value: str) -> float:
    return float(value.replace("TLS", "").replace("_", "."))


def test_https_only_and_tls_12_or_later() -> None:
    props = _site()["properties"]
    assert props["httpsOnly"] is True
    assert _tls(props["siteConfig"]["minTlsVersion"]) >= 1.2
    assert _tls(props["siteConfig"]["scmMinTlsVersion"]) >= 1.2
    storage = bicep.one_resource(bicep.parse_bicep(bicep.MODULES_DIR / "storage.bicep"), "Microsoft.Storage/storageAccounts")
    assert _tls(storage["properties"]["minimumTlsVersion"]) >= 1.2
    assert storage["properties"]["supportsHttpsTrafficOnly"] is True


def test_ftp_and_basic_publishing_credentials_are_off() -> None:
    policies = bicep.resources(FA, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    by_name = {p["name"]: p for p in policies.values()}
    assert set(by_name) == {"ftp", "scm"}
    for policy in by_name.values():
        assert policy["properties"]["allow"] is False
        assert "condition" not in policy


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_cors_lists_only_the_spa_origins(app: Path) -> None:
    assert _site()["properties"]["siteConfig"]["cors"]["allowedOrigins"] == "spaOrigins"
    _, scope = bicep.module_scope(app, "relay")
    cors = scope.eval(_site()["properties"]["siteConfig"]["cors"])
    assert cors["allowedOrigins"], "CORS must list the SPA origins"
    for origin in cors["allowedOrigins"]:
        assert origin != "*" and "*" not in origin
        assert re.fullmatch(r"https://[a-z0-9.-]+(:\d+)?", origin), f"not an https origin: {origin}"
    # Credentials (cookies) only for the optional login flow.
    assert cors["supportCredentials"] is scope.lookup("enableLoginFlow")


def _deployed_cors(overrides: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(CORS origins, SPA_CONFIG.allowedOrigins) for helpdesk with ``overrides``."""
    app = bicep.APPS_DIR / "helpdesk.bicepparam"
    _, scope = bicep.module_scope(app, "relay", overrides)
    cors = scope.eval(_site()["properties"]["siteConfig"]["cors"])["allowedOrigins"]
    spa_config = bicep.main_scope(app, overrides).eval(MAIN["outputs"]["SPA_CONFIG"]["value"])["allowedOrigins"]
    return cors, spa_config


@pytest.mark.parametrize(
    "origin",
    ["http://helpdesk.contoso.example", "https://localhost:5173", "HTTPS://LOCALHOST", "https://127.0.0.1:8443", "http://localhost:5173"],
)
def test_production_refuses_development_origins(origin: str) -> None:
    origins = ["https://helpdesk.contoso.example", origin]
    with pytest.raises(bicep.BicepFail, match=rf"spaOrigins refused for environmentType production: {re.escape(origin)}\."):
        _deployed_cors({"spaOrigins": origins})
    # A parameter file that declares itself a development environment may list them.
    assert _deployed_cors({"spaOrigins": origins, "environmentType": "development"}) == (origins, origins)


@pytest.mark.parametrize("environment_type", ["production", "development"])
@pytest.mark.parametrize("origin", ["*", "https://*.contoso.example"])
def test_wildcard_origins_are_refused_everywhere(environment_type: str, origin: str) -> None:
    with pytest.raises(bicep.BicepFail, match="spaOrigins refused"):
        _deployed_cors({"spaOrigins": [origin], "environmentType": environment_type})


def test_production_is_the_default_and_the_examples_are_production() -> None:
    assert MAIN["parameters"]["environmentType"]["default"] == "production"
    for app in APPS:
        assert bicep.main_scope(app).lookup("environmentType") == "production", app.name


# ---- inbound access: the front end is the only way in -----------------------------------

FRONT_DOOR_ID = "a1b2c3d4-0000-4000-8000-0000000000fd"
DEPLOYER_RANGE = "203.0.113.7/32"


def _access(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The site's access restriction settings and app settings for helpdesk with ``overrides``."""
    app = bicep.APPS_DIR / "helpdesk.bicepparam"
    _, scope = bicep.module_scope(app, "relay", overrides)
    site_config = scope.eval(_site()["properties"]["siteConfig"])
    settings = {s["name"]: s["value"] for s in site_config.pop("appSettings")}
    return {k: v for k, v in site_config.items() if "IpSecurityRestrictions" in k or "ipSecurityRestrictions" in k}, settings


def test_front_door_mode_admits_only_this_front_door_profile() -> None:
    # Anyone can call *.azurewebsites.net with their own X-Azure-SocketIP: in
    # front-door mode the site admits only Azure Front Door's backend addresses
    # with this profile's X-Azure-FDID, and denies everything else, scm included.
    # https://learn.microsoft.com/azure/app-service/app-service-ip-restrictions#restrict-access-to-a-specific-azure-front-door-instance
    access, settings = _access({"clientIpMode": "front-door", "frontDoorId": FRONT_DOOR_ID})
    assert access == {
        "ipSecurityRestrictions": [
            {
                "name": "azure-front-door",
                "description": "Only this Azure Front Door profile",
                "action": "Allow",
                "priority": 100,
                "tag": "ServiceTag",
                "ipAddress": "AzureFrontDoor.Backend",
                "headers": {"x-azure-fdid": [FRONT_DOOR_ID]},
            }
        ],
        "ipSecurityRestrictionsDefaultAction": "Deny",
        "scmIpSecurityRestrictionsUseMain": False,
        "scmIpSecurityRestrictions": [],
        "scmIpSecurityRestrictionsDefaultAction": "Deny",
    }
    # The platform checks the same profile ID the relay checks.
    assert settings["RELAY_CLIENT_IP_MODE"] == "front-door" and settings["RELAY_FRONT_DOOR_ID"] == FRONT_DOOR_ID


def test_a_locked_down_scm_site_admits_only_the_given_deployers() -> None:
    access, _ = _access({"clientIpMode": "front-door", "frontDoorId": FRONT_DOOR_ID, "scmAllowedIpRanges": [DEPLOYER_RANGE]})
    assert access["scmIpSecurityRestrictions"] == [
        {"name": "deployment-0", "description": "Code deployment", "action": "Allow", "priority": 100, "ipAddress": DEPLOYER_RANGE}
    ]
    assert access["scmIpSecurityRestrictionsDefaultAction"] == "Deny"
    assert access["scmIpSecurityRestrictionsUseMain"] is False


def test_proxy_mode_admits_only_the_proxy() -> None:
    proxies = ["198.51.100.0/28", "198.51.100.64/28"]
    access, settings = _access({"clientIpMode": "xff:1", "trustedProxyIpRanges": proxies})
    assert [(r["ipAddress"], r["action"], r["priority"]) for r in access["ipSecurityRestrictions"]] == [
        (proxies[0], "Allow", 100),
        (proxies[1], "Allow", 101),
    ]
    assert all("tag" not in r and "headers" not in r for r in access["ipSecurityRestrictions"])
    assert access["ipSecurityRestrictionsDefaultAction"] == "Deny"
    assert access["scmIpSecurityRestrictionsDefaultAction"] == "Deny"
    assert settings["RELAY_CLIENT_IP_MODE"] == "xff:1"


def test_app_service_mode_needs_no_lockdown() -> None:
    # The relay takes the client IP from the platform's own client-ip header.
    access, _ = _access({"clientIpMode": "app-service"})
    assert access["ipSecurityRestrictions"] == [] and access["ipSecurityRestrictionsDefaultAction"] == "Allow"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"clientIpMode": "front-door", "frontDoorId": ""}, "clientIpMode front-door needs frontDoorId"),
        ({"clientIpMode": "xff:2", "trustedProxyIpRanges": []}, "clientIpMode xff:2 needs trustedProxyIpRanges"),
    ],
)
def test_a_lockdown_without_the_front_ends_identity_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(bicep.BicepFail, match=message):
        _access(overrides)


def _forward_proxy(overrides: dict[str, Any]) -> dict[str, Any]:
    _, scope = bicep.module_scope(bicep.APPS_DIR / "helpdesk.bicepparam", "relay", overrides)
    forward_proxy: dict[str, Any] = scope.eval(_auth()["properties"])["httpSettings"]["forwardProxy"]
    return forward_proxy


def test_the_login_flow_behind_front_door_calls_back_to_front_doors_host() -> None:
    # Easy Auth builds the login flow's callback from the request's host; behind Front Door that must be the host
    # the browser used (X-Forwarded-Host, which Front Door sends), because the site's own *.azurewebsites.net host
    # admits only Front Door.
    front_door = {"clientIpMode": "front-door", "frontDoorId": FRONT_DOOR_ID}
    assert _forward_proxy({**front_door, **bicep.LOGIN_FLOW_ON}) == {"convention": "Standard"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"clientIpMode": "front-door", "frontDoorId": FRONT_DOOR_ID, "enableLoginFlow": False},
        {"clientIpMode": "app-service", **bicep.LOGIN_FLOW_ON},
        {"clientIpMode": "xff:1", "trustedProxyIpRanges": ["198.51.100.0/28"], **bicep.LOGIN_FLOW_ON},
    ],
    ids=["front-door-bearer", "app-service-login-flow", "proxy-login-flow"],
)
def test_no_forwarded_host_is_trusted_anywhere_else(overrides: dict[str, Any]) -> None:
    # A site anyone can reach must not build redirects from a header any caller can send.
    assert _forward_proxy(overrides) == {"convention": "NoProxy"}


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_each_example_is_locked_down_as_its_mode_requires(app: Path) -> None:
    _, scope = bicep.module_scope(app, "relay")
    site_config = scope.eval(_site()["properties"]["siteConfig"])
    locked = scope.lookup("clientIpMode") != "app-service"
    assert site_config["ipSecurityRestrictionsDefaultAction"] == ("Deny" if locked else "Allow")
    assert site_config["scmIpSecurityRestrictionsDefaultAction"] == ("Deny" if locked else "Allow")


# ---- secrets and keys --------------------------------------------------------------------


# The one secret a template reads: the Logic App trigger URL (SAS-signed) that Defender for Cloud's workflow
# automation must be given, straight into its write-only ``uri`` property, never into an output or a setting.
SECRET_READS_ALLOWED = {bicep.MODULES_DIR / "defender-blocklist-automation.bicep": {"listCallbackUrl"}}


def test_no_template_reads_keys_or_secrets() -> None:
    for path in bicep.bicep_files():
        called = bicep.functions_called(bicep.parse_bicep(path))
        reads = {f for f in called if f.lower().startswith("list") or f == "getSecret"} - SECRET_READS_ALLOWED.get(path, set())
        assert not reads, f"{path} reads keys: {called}"


def test_the_logic_app_trigger_url_goes_only_to_the_defender_automation() -> None:
    [(path, _)] = SECRET_READS_ALLOWED.items()
    parsed = bicep.parse_bicep(path)
    users = [name for name, resource in parsed["resources"].items() if "listCallbackUrl" in bicep.functions_called(resource)]
    assert users == ["automation"] and parsed["resources"]["automation"]["type"] == "Microsoft.Security/automations"
    assert not any("listCallbackUrl" in bicep.functions_called(output) for output in parsed.get("outputs", {}).values())


def test_no_secure_parameters_and_no_secret_outputs() -> None:
    for path in bicep.bicep_files():
        parsed = bicep.parse_bicep(path)
        for name, param in parsed.get("parameters", {}).items():
            assert bicep.decorator(param, "secure") is None, f"{path}: @secure param {name}: secrets belong in Key Vault"
        for name, output in parsed.get("outputs", {}).items():
            text = repr(output["value"])
            assert not re.search(r"KEY|SECRET|PASSWORD", name, re.IGNORECASE), f"{path}: output {name}"
            if path != bicep.MODULES_DIR / "monitoring.bicep":
                assert "ConnectionString" not in text, f"{path}: output {name} exposes a connection string"


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_no_secret_or_key_in_app_settings(app: Path) -> None:
    settings = bicep.relay_app_settings(app)
    for name, value in settings.items():
        assert not SECRETISH_VALUE.search(value), f"{name} carries a credential"
        if not SECRETISH_NAME.search(name):
            continue
        if name == "AZURE_OPENAI_KEY_SECRET_NAME":
            assert re.fullmatch(r"[A-Za-z0-9-]{1,127}", value), "must be a Key Vault secret *name*"
        elif name == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            # Identifies the component; with local auth disabled it grants nothing.
            monitoring = bicep.parse_bicep(bicep.MODULES_DIR / "monitoring.bicep")
            component = bicep.one_resource(monitoring, "Microsoft.Insights/components")
            assert component["properties"]["DisableLocalAuth"] is True
            assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith("Authorization=AAD")
        else:
            pytest.fail(f"unexpected secret-looking app setting {name}")
    assert "AzureWebJobsStorage" not in settings, "host storage must use the identity, not a connection string"


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_host_storage_uses_the_identity_and_the_accounts_own_service_uris(app: Path) -> None:
    # By service URI (from the account's primaryEndpoints), not by account
    # name: the name form assumes the public cloud's storage DNS suffix.
    # https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
    settings = bicep.relay_app_settings(app)
    host = {name.removeprefix("AzureWebJobsStorage__"): value for name, value in settings.items() if name.startswith("AzureWebJobsStorage")}
    assert host == {
        "blobServiceUri": bicep.EXAMPLE_OUTPUTS["storage.outputs.blobEndpoint"],
        "credential": "managedidentity",
        "clientId": settings["AZURE_CLIENT_ID"],
    }
    # The storage module hands on what the account reports, e.g. in Azure Government.
    storage = bicep.parse_bicep(bicep.MODULES_DIR / "storage.bicep")
    endpoints = {service: f"https://stexample.{service}.core.usgovcloudapi.net/" for service in ("blob", "queue", "table")}
    scope = bicep.Evaluator.for_template(storage, {}, {"storage.properties.primaryEndpoints": endpoints})
    for service in ("blob", "table"):
        assert scope.eval(storage["outputs"][f"{service}Endpoint"]["value"]) == endpoints[service]


# Data roles on a whole storage account, by the service they open.
ACCOUNT_DATA_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "blob",  # Storage Blob Data Owner
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "blob",  # Storage Blob Data Contributor
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "queue",  # Storage Queue Data Contributor
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "table",  # Storage Table Data Contributor
}


def test_the_host_uses_only_storage_services_its_identity_may_use() -> None:
    # A host storage service URI without a data role for the identity fails at the host's first use of it.
    # An app with HTTP triggers only needs blob storage for its host, as in Microsoft's Flex Consumption
    # quickstart (https://github.com/Azure-Samples/functions-quickstart-python-http-azd, infra/main.bicep:
    # queue and table off unless Durable Functions or those triggers are used).
    storage = bicep.parse_bicep(bicep.MODULES_DIR / "storage.bicep")
    scope = bicep.Evaluator.for_template(storage, {"principalId": "principal"}, {"storage.id": "account"})
    granted = {
        ACCOUNT_DATA_ROLES[scope.eval(r["properties"]["roleDefinitionId"]).rsplit("/", 1)[-1]]
        for r in bicep.resources(storage, "Microsoft.Authorization/roleAssignments").values()
        if r["scope"] == "storage"
    }
    for app in APPS:
        settings = bicep.relay_app_settings(app)
        used = {
            name.removeprefix("AzureWebJobsStorage__").removesuffix("ServiceUri")
            for name in settings
            if name.startswith("AzureWebJobsStorage__") and name.endswith("ServiceUri")
        }
        assert used == {"blob"} and used <= granted, (app.name, used, granted)


@pytest.mark.parametrize("login_flow", [False, True])
def test_no_client_secret_anywhere_in_the_deployment(login_flow: bool) -> None:
    # The login flow is the only part of Easy Auth that redeems codes; it uses
    # the relay identity's federated credential. No template names, takes,
    # stores or references a client secret.
    for path in bicep.bicep_files():
        parsed = bicep.parse_bicep(path)
        names = [*parsed.get("parameters", {}), *parsed.get("variables", {}), *parsed.get("outputs", {})]
        assert not [n for n in names if re.search(r"client_?secret|password", n, re.IGNORECASE)], path.name
        text = path.read_text(encoding="utf-8")
        assert "@Microsoft.KeyVault(" not in text and "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET" not in text, path.name
    registration = _auth()["properties"]["identityProviders"]["azureActiveDirectory"]["registration"]
    assert set(registration) == {"clientId", "openIdIssuer", "clientSecretSettingName"}
    for app in APPS:
        _, scope = bicep.module_scope(app, "relay", bicep.LOGIN_FLOW_ON if login_flow else {"enableLoginFlow": False})
        settings = {s["name"]: s["value"] for s in scope.eval(_site()["properties"]["siteConfig"]["appSettings"])}
        setting_name = scope.eval(registration["clientSecretSettingName"])
        assert setting_name == (FIC_ASSERTION_SETTING if login_flow else None)
        if login_flow:
            assert settings[FIC_ASSERTION_SETTING] == settings["AZURE_CLIENT_ID"], "must name the relay identity"
        assert not [name for name in settings if re.search(r"SECRET|PASSWORD", name) and name != "AZURE_OPENAI_KEY_SECRET_NAME"]


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_outputs_carry_no_secret(app: Path) -> None:
    scope = bicep.main_scope(app)
    for name, output in MAIN["outputs"].items():
        text = repr(scope.eval(output["value"]))
        assert not SECRETISH_VALUE.search(text), f"output {name}"
        assert "InstrumentationKey" not in text, f"output {name}"


# ---- storage and identity --------------------------------------------------------------


def test_storage_shared_keys_and_anonymous_access_are_off() -> None:
    storage = bicep.one_resource(bicep.parse_bicep(bicep.MODULES_DIR / "storage.bicep"), "Microsoft.Storage/storageAccounts")
    props = storage["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["defaultToOAuthAuthentication"] is True


def test_flex_consumption_python_with_identity_based_deployment_storage() -> None:
    plan = bicep.one_resource(FA, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = _site()
    assert site["identity"]["type"] == "UserAssigned"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"]["name"] == "python"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    # Settings Flex Consumption rejects or ignores (runtime lives in functionAppConfig).
    names = {name for app in APPS for name in bicep.relay_app_settings(app)}
    assert not names & {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTSHARE"}
    assert "ftpsState" not in site["properties"]["siteConfig"], f"FTPS is not supported on Flex Consumption: {FLEX_DEPRECATIONS_DOC}"


def test_ftps_skip_cites_the_flex_consumption_deprecations() -> None:
    # properties.ftpsState is listed as "FTPS not supported" among the Flex
    # Consumption deprecations, so the CKV_AZURE_78 skip must say where.
    lines = [line for line in bicep.FUNCTION_APP.read_text(encoding="utf-8").splitlines() if "checkov:skip=CKV_AZURE_78" in line]
    assert len(lines) == 1
    assert FLEX_DEPRECATIONS_DOC in lines[0]


# ---- role assignments -------------------------------------------------------------------


def _role_assignments() -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    found = []
    for path in bicep.bicep_files():
        parsed = bicep.parse_bicep(path)
        for assignment in bicep.resources(parsed, "Microsoft.Authorization/roleAssignments").values():
            found.append((path, parsed, assignment))
    return found


# Defender for Cloud keeps an alert about a resource under that resource's group, not under the
# resource, so reading it needs a role on the group: Security Reader (read-only) for the block-list
# Logic App, on the Azure OpenAI resource's group (tests/infra/test_defender_blocklist.py).
GROUP_SCOPED_ROLES = {bicep.MODULES_DIR / "defender-alert-reader.bicep": "39bc4728-0917-49c7-9d2c-d95423bc2eb4"}


def test_every_role_assignment_is_scoped_to_one_resource() -> None:
    assignments = _role_assignments()
    assert assignments
    for path, parsed, assignment in assignments:
        scope = assignment.get("scope")
        if path in GROUP_SCOPED_ROLES and scope is None:
            assert _role_ids(path.name) == [GROUP_SCOPED_ROLES[path]]
        else:
            assert isinstance(scope, str) and scope in parsed["resources"], (
                f"{path}: role assignment without a resource scope would apply to the whole resource group or subscription"
            )
        assert assignment["properties"]["principalType"] == "ServicePrincipal"


def test_openai_role_is_openai_user_on_the_given_resource_only() -> None:
    path = bicep.MODULES_DIR / "openai-role.bicep"
    parsed = bicep.parse_bicep(path)
    scope = bicep.Evaluator.for_template(parsed, {"principalId": "p", "openAiAccountName": "a"})
    (assignment,) = bicep.resources(parsed, "Microsoft.Authorization/roleAssignments").values()
    role = scope.eval(assignment["properties"]["roleDefinitionId"])
    assert role.endswith(f"/providers/Microsoft.Authorization/roleDefinitions/{OPENAI_USER_ROLE}")
    target = parsed["resources"][assignment["scope"]]
    assert target["type"] == "Microsoft.CognitiveServices/accounts" and target["existing"] is True
    # main.bicep deploys the module into the OpenAI resource's own group, named by the given ID.
    module = bicep.module_config(MAIN["modules"]["openAiRole"])
    assert "condition" not in module
    assert module["params"]["openAiAccountName"] == {"function": {"type": "last", "parameters": {"arg_1": "openAiParts"}}}


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_openai_role_targets_the_resource_given_by_id(app: Path) -> None:
    main = bicep.main_scope(app)
    resource_id = main.lookup("openAiResourceId")
    parts = resource_id.split("/")
    scope_call = bicep.module_config(MAIN["modules"]["openAiRole"])["scope"]["function"]
    assert scope_call["type"] == "resource_group"
    sub = main.eval(scope_call["parameters"]["subscription_id"])
    group = main.eval(scope_call["parameters"]["resource_group_name"])
    assert (sub, group) == (parts[2], parts[4])
    _, scope = bicep.module_scope(app, "openAiRole")
    assert scope.lookup("openAiAccountName") == parts[-1]
    assert "/providers/Microsoft.CognitiveServices/accounts/" in resource_id


def _role_ids(module: str) -> list[str]:
    parsed = bicep.parse_bicep(bicep.MODULES_DIR / module)
    scope = bicep.Evaluator.for_template(parsed, {}, evaluated={name: "x" for name in parsed["parameters"]})
    prefix = f"{bicep.PLATFORM['subscription']['id']}/providers/Microsoft.Authorization/roleDefinitions/"
    ids = []
    for assignment in bicep.resources(parsed, "Microsoft.Authorization/roleAssignments").values():
        role = scope.eval(assignment["properties"]["roleDefinitionId"])
        assert role.startswith(prefix), role
        ids.append(role.removeprefix(prefix))
    return ids


def test_host_storage_role_is_exactly_storage_blob_data_owner() -> None:
    # Storage Blob Data Owner covers the Functions host (no extension) and the
    # Flex Consumption deployment container; queue/table roles are only for
    # triggers the relay does not have.
    # https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
    assert _role_ids("storage.bicep") == [STORAGE_BLOB_DATA_OWNER_ROLE]
    assert not {STORAGE_QUEUE_DATA_CONTRIBUTOR_ROLE, STORAGE_TABLE_DATA_CONTRIBUTOR_ROLE} & set(_role_ids("storage.bicep"))
    parsed = bicep.parse_bicep(bicep.MODULES_DIR / "storage.bicep")
    (assignment,) = bicep.resources(parsed, "Microsoft.Authorization/roleAssignments").values()
    assert parsed["resources"][assignment["scope"]]["type"] == "Microsoft.Storage/storageAccounts"


def test_telemetry_role_is_monitoring_metrics_publisher_on_application_insights() -> None:
    # Entra-authenticated ingestion (local auth off) needs Monitoring Metrics
    # Publisher on the Application Insights resource.
    # https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
    assert _role_ids("monitoring.bicep") == [MONITORING_METRICS_PUBLISHER_ROLE]
    parsed = bicep.parse_bicep(bicep.MODULES_DIR / "monitoring.bicep")
    (assignment,) = bicep.resources(parsed, "Microsoft.Authorization/roleAssignments").values()
    assert parsed["resources"][assignment["scope"]]["type"] == "Microsoft.Insights/components"


def test_the_relay_may_write_its_two_tables_and_no_other_storage_data() -> None:
    # The block list and budget counters: Storage Table Data Contributor on each table, not on the account
    # (https://learn.microsoft.com/azure/storage/tables/assign-azure-role-data-access).
    assert _role_ids("blocklist-table.bicep") == [STORAGE_TABLE_DATA_CONTRIBUTOR_ROLE] * 2
    parsed = bicep.parse_bicep(bicep.MODULES_DIR / "blocklist-table.bicep")
    targets = [parsed["resources"][a["scope"]] for a in bicep.resources(parsed, "Microsoft.Authorization/roleAssignments").values()]
    assert [t["type"] for t in targets] == ["Microsoft.Storage/storageAccounts/tableServices/tables"] * 2
    scope = bicep.Evaluator.for_template(parsed, {})
    tables = sorted(scope.eval(t["config"]["name"]) for t in targets)
    # The names the relay is given (main.bicep passes this module's outputs).
    assert tables == sorted(bicep.EXAMPLE_OUTPUTS[f"relayTables.outputs.{kind}TableName"] for kind in ("blocklist", "budget"))
    # Granted to the relay identity.
    principal = bicep.module_config(MAIN["modules"]["relayTables"])["params"]["principalId"]
    assert bicep.main_scope(APPS[0]).eval(principal) == bicep.EXAMPLE_OUTPUTS["identity.outputs.principalId"]


KEY_VAULT_ROLE = bicep.MODULES_DIR / "keyvault-role.bicep"
KEY_VAULT_SECRETS_USER_ROLE = "4633458b-17de-408a-b874-0445c86b69e6"


def _key_vault_role_scope(vault_properties: dict[str, Any]) -> tuple[dict[str, Any], bicep.Evaluator]:
    parsed = bicep.parse_bicep(KEY_VAULT_ROLE)
    args = {"principalId": "p", "keyVaultName": "kv-shared", "secretName": "aoai-api-key"}
    return parsed, bicep.Evaluator.for_template(parsed, {}, {"vault.properties": vault_properties}, evaluated=args)


def test_key_vault_role_is_secrets_user_on_the_one_secret_only() -> None:
    # The vault may be shared: the grant covers the Azure OpenAI key secret,
    # not every secret in it.
    # https://learn.microsoft.com/azure/key-vault/general/rbac-guide
    parsed, scope = _key_vault_role_scope({"enableRbacAuthorization": True})
    (assignment,) = bicep.resources(parsed, "Microsoft.Authorization/roleAssignments").values()
    assert scope.eval(assignment["properties"]["roleDefinitionId"]).endswith(f"/{KEY_VAULT_SECRETS_USER_ROLE}")
    target = parsed["resources"][assignment["scope"]]
    assert target["type"] == "Microsoft.KeyVault/vaults/secrets" and target["existing"] is True
    assert scope.eval(target["config"]["name"]) == "aoai-api-key"
    vault = parsed["resources"][target["config"]["parent"]]
    assert vault["type"] == "Microsoft.KeyVault/vaults" and vault["existing"] is True
    assert scope.eval(vault["config"]["name"]) == "kv-shared"
    assert [r["type"] for r in parsed["resources"].values() if not r["existing"]] == ["Microsoft.Authorization/roleAssignments"]


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_key_vault_role_is_granted_in_key_mode_only_on_the_key_secret(app: Path) -> None:
    module = bicep.module_config(MAIN["modules"]["keyVaultRole"])
    assert module["condition"] == "isKeyMode"
    main = bicep.main_scope(app)
    if main.lookup("openAiAuthMode") == "key":
        _, scope = bicep.module_scope(app, "keyVaultRole")
        assert scope.lookup("secretName") == main.lookup("openAiKeySecretName")
        assert scope.lookup("keyVaultName") == main.lookup("keyVaultResourceId").rsplit("/", 1)[1]


@pytest.mark.parametrize("vault_properties", [{"enableRbacAuthorization": False}, {}], ids=["access-policies", "property-absent"])
def test_an_access_policy_vault_is_refused_with_a_clear_message(vault_properties: dict[str, Any]) -> None:
    # Role assignments are ignored in the access policy model: the deployment
    # stops before writing one, naming the vault and the fix.
    parsed, scope = _key_vault_role_scope(vault_properties)
    (assignment,) = bicep.resources(parsed, "Microsoft.Authorization/roleAssignments").values()
    with pytest.raises(
        bicep.BicepFail, match=r"Key Vault kv-shared uses the access policy permission model .*--enable-rbac-authorization true"
    ):
        scope.eval(assignment["properties"])


def test_an_rbac_vault_is_accepted() -> None:
    parsed, scope = _key_vault_role_scope({"enableRbacAuthorization": True, "vaultUri": "https://kv-shared.vault.azure.net/"})
    (assignment,) = bicep.resources(parsed, "Microsoft.Authorization/roleAssignments").values()
    assert scope.eval(assignment["properties"])["description"] == "Relay reads the Azure OpenAI key"


def test_defender_ai_plan_is_its_own_subscription_template() -> None:
    path = bicep.BICEP_DIR / "subscription" / "defender-ai.bicep"
    parsed = bicep.parse_bicep(path)
    assert parsed["globals"]["scope"]["value"] == "subscription"
    plan = bicep.one_resource(parsed, "Microsoft.Security/pricings")
    assert plan["name"] == "AI" and plan["properties"]["pricingTier"] == "Standard"
    (extension,) = plan["properties"]["extensions"]
    assert extension["name"] == "AIPromptEvidence"
    scope = bicep.Evaluator.for_template(parsed, {})
    assert scope.eval(extension["isEnabled"]) == "True"
    assert bicep.Evaluator.for_template(parsed, {"promptEvidence": False}).eval(extension["isEnabled"]) == "False"
    # The per-app deployment neither deploys it nor offers a switch for it.
    assert path.resolve() not in {target for _, target in bicep.module_paths(bicep.MAIN)}
    assert not {name for name in MAIN["parameters"] if any(word in name.lower() for word in ("aiplan", "promptevidence", "pricing"))}


def test_the_defender_command_in_the_docs_deploys_that_template() -> None:
    text = (bicep.ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    command = re.search(r"az deployment sub create[^`]*?--template-file (\S+)[^`]*?--parameters ((?:\w+=\S+ ?)+)", text)
    assert command, "docs/deployment.md must give the az command for the Defender template"
    template = bicep.ROOT / command.group(1)
    assert template == bicep.BICEP_DIR / "subscription" / "defender-ai.bicep"
    declared = bicep.parse_bicep(template)["parameters"]
    for assignment in command.group(2).split():
        assert assignment.split("=", 1)[0] in declared, assignment
