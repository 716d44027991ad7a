"""The app settings the templates produce,
fed to the relay's own configuration loader, are accepted, and every setting
the loader reads that a deployment should set is set; README.md's settings table
lists exactly the settings the loader reads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from shared.config import load_settings
from shared.telemetry_config import telemetry_settings
from tests.infra import bicep
from tests.support.app_settings import REQUIRED_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
APPS = bicep.example_param_files()
APP_IDS = [p.stem for p in APPS]

#: Set by App Service itself, never by the template.
# What App Service sets itself: Easy Auth on, the managed identity endpoint and the app's name
# (https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference).
PLATFORM_INJECTED = {
    "WEBSITE_AUTH_ENABLED": "true",
    "IDENTITY_ENDPOINT": "http://localhost:42356/msi/token",
    "WEBSITE_SITE_NAME": "func-relay-helpdesk",  # the app's name (https://learn.microsoft.com/azure/app-service/reference-app-settings)
}
#: Read by the loader but only meaningful in key mode.
KEY_MODE_ONLY = {"AZURE_KEYVAULT_URL", "AZURE_OPENAI_KEY_SECRET_NAME"}
#: The relay's settings (README.md, Configuration), as the relay reads them.
RELAY_SETTINGS = {
    "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_VERSION", "AZURE_OPENAI_DEPLOYMENTS", "AZURE_OPENAI_AUTH",
    "AZURE_CLIENT_ID", "APPLICATION_NAME", "RELAY_ALLOWED_TENANTS", "RELAY_REQUIRED_ROLES",
    "RELAY_ALLOWED_AUDIENCES", "RELAY_ALLOW_APP_TOKENS", "RELAY_CLIENT_IP_MODE", "RELAY_FRONT_DOOR_ID",
    "RELAY_MAX_BODY_BYTES", "RELAY_MAX_TOKENS", "RELAY_MAX_N", "RELAY_UPSTREAM_TIMEOUT_S",
}  # fmt: skip


class RecordingEnv(Mapping[str, str]):
    """A mapping that remembers which names the loader looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_template_settings_load(app: Path) -> None:
    settings = bicep.relay_app_settings(app)
    env = RecordingEnv({**settings, **PLATFORM_INJECTED})
    loaded = load_settings(env)

    main = bicep.main_scope(app)
    assert loaded.easy_auth_enabled is True
    assert loaded.application_name == main.lookup("applicationName")
    assert list(loaded.deployments) == main.lookup("openAiDeployments")
    assert loaded.endpoint == main.lookup("openAiEndpoint").rstrip("/")
    assert loaded.api_version == main.lookup("openAiApiVersion")
    assert loaded.auth_mode == main.lookup("openAiAuthMode")
    assert loaded.client_id == bicep.EXAMPLE_OUTPUTS["identity.outputs.clientId"]
    assert loaded.auth_policy.allowed_tenants == frozenset(t.lower() for t in main.lookup("allowedTenants"))
    assert loaded.auth_policy.required_roles == frozenset(main.lookup("requiredRoles"))
    assert loaded.auth_policy.allowed_audiences == frozenset(main.lookup("allowedAudiences"))
    assert loaded.auth_policy.allow_app_tokens is False
    assert loaded.max_tokens == main.lookup("maxTokens")
    # The block list and budgets live in the tables blocklist-table.bicep creates, in the host storage account.
    assert loaded.controls.table_endpoint == bicep.EXAMPLE_OUTPUTS["storage.outputs.tableEndpoint"].rstrip("/")
    assert loaded.controls.blocklist.table == bicep.EXAMPLE_OUTPUTS["relayTables.outputs.blocklistTableName"]
    assert loaded.controls.budget.table == bicep.EXAMPLE_OUTPUTS["relayTables.outputs.budgetTableName"]
    if loaded.auth_mode == "key":
        assert loaded.keyvault_url and loaded.keyvault_url.startswith("https://")
        assert loaded.key_secret_name == main.lookup("openAiKeySecretName")
    else:
        assert loaded.keyvault_url is None and loaded.key_secret_name is None

    # Every name the loader reads that a deployment should provide is provided.
    expected = env.read - set(PLATFORM_INJECTED)
    if loaded.auth_mode != "key":
        expected -= KEY_MODE_ONLY
    assert expected <= set(settings), f"the template does not set {sorted(expected - set(settings))}"


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_every_spec_setting_is_set(app: Path) -> None:
    settings = bicep.relay_app_settings(app)
    missing = RELAY_SETTINGS - set(settings)
    assert not missing, f"relay settings missing from the function app: {sorted(missing)}"
    if settings["AZURE_OPENAI_AUTH"] == "key":
        assert set(settings) >= KEY_MODE_ONLY
    else:
        assert not KEY_MODE_ONLY & set(settings), "key-mode settings must not appear in managed-identity mode"


def test_secure_defaults_of_main() -> None:
    main = bicep.parse_bicep(bicep.MAIN)["parameters"]
    assert main["openAiAuthMode"]["default"] == "managed-identity"
    assert main["allowAppTokens"]["default"] is False
    assert main["enableLoginFlow"]["default"] is False
    assert main["requiredRoles"]["default"] == ["Relay.User"]
    assert main["allowedTenants"]["default"] == ["tenantId"]


def test_loader_rejects_what_the_template_must_not_produce() -> None:
    # The settings are real input to the loader: a broken one stops the app.
    settings = {**bicep.relay_app_settings(APPS[0]), **PLATFORM_INJECTED}
    with pytest.raises(ValueError, match="AZURE_OPENAI_DEPLOYMENTS"):
        load_settings({**settings, "AZURE_OPENAI_DEPLOYMENTS": ""})


@pytest.mark.parametrize(("version", "init_indexing"), [("3.11", "1"), ("3.12", "1"), ("3.13", None)])
def test_worker_indexing_is_turned_on_where_the_python_version_needs_it(version: str, init_indexing: str | None) -> None:
    """The HTTP streams extension needs worker indexing: an opt-in below 3.13, the default from 3.13."""
    settings = bicep.relay_app_settings(APPS[0], {"pythonVersion": version})
    assert settings.get("PYTHON_ENABLE_INIT_INDEXING") == init_indexing


def _lower_knee(results: str, telemetry: bool) -> int:
    """The lower of the relay's two knees (streams, calls) in a committed capacity run through the worker."""
    measured = json.loads((ROOT / "bench" / "results" / results).read_text(encoding="utf-8"))["results"]["capacity"]
    assert measured["runtime"] == "worker"
    assert measured["relay_telemetry"].startswith("on") == telemetry
    knees = [measured[kind]["knee"]["relay"] for kind in ("streams", "plain")]
    assert all(isinstance(knee, int) for knee in knees), knees
    return min(knees)


# Flex Consumption's CPU cores per instance size (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-sizes).
@pytest.mark.parametrize(("memory_mb", "cores"), [(512, 0.25), (2048, 1), (4096, 2)])
def test_the_default_http_concurrency_of_each_instance_size_stays_within_the_capacity_measured_through_the_real_worker(
    memory_mb: int, cores: float
) -> None:
    """The committed capacity runs (python -m bench --capacity-only --runtime worker, with and without --telemetry) bound
    the default of each size: the lower knee of the two, since the template deploys with Application Insights on.

    They ran the worker and the host on one core, as a 2,048 MB instance has. A quarter of a core serves about a quarter
    of that; two cores give the one worker process a core of its own at most, so the one-core knee is a lower bound.
    """
    lower = min(_lower_knee("capacity-worker.json", telemetry=False), _lower_knee("capacity-worker-telemetry.json", telemetry=True))
    knee = lower * min(cores, 1)
    parsed, scope = bicep.module_scope(APPS[0], "relay", {"instanceMemoryMB": memory_mb})
    site = bicep.one_resource(parsed, "Microsoft.Web/sites")
    scale = scope.eval(site["properties"]["functionAppConfig"]["scaleAndConcurrency"])
    concurrency = scale["triggers"]["http"]["perInstanceConcurrency"]
    assert scale["instanceMemoryMB"] == memory_mb
    assert 0.5 * knee <= concurrency <= 0.9 * knee, (concurrency, knee)
    assert bicep.relay_app_settings(APPS[0], {"instanceMemoryMB": memory_mb})["RELAY_UPSTREAM_CONNECTIONS"] == str(concurrency)


def test_an_explicit_http_concurrency_wins_over_the_instance_sizes_default() -> None:
    parsed, scope = bicep.module_scope(APPS[0], "relay", {"instanceMemoryMB": 512, "httpPerInstanceConcurrency": 50})
    site = bicep.one_resource(parsed, "Microsoft.Web/sites")
    assert scope.eval(site["properties"]["functionAppConfig"]["scaleAndConcurrency"])["triggers"]["http"]["perInstanceConcurrency"] == 50


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_flex_scales_on_an_explicit_http_concurrency_with_a_pool_to_match(app: Path) -> None:
    """Flex defaults Python apps to one request per instance: every open stream would hold an instance."""
    parsed, scope = bicep.module_scope(app, "relay")
    site = bicep.one_resource(parsed, "Microsoft.Web/sites")
    scale = scope.eval(site["properties"]["functionAppConfig"]["scaleAndConcurrency"])
    concurrency = scale["triggers"]["http"]["perInstanceConcurrency"]
    assert concurrency > 1
    assert bicep.relay_app_settings(app)["RELAY_UPSTREAM_CONNECTIONS"] == str(concurrency)
    assert scale["alwaysReady"] == []
    parsed, scope = bicep.module_scope(app, "relay", {"alwaysReadyInstances": 2, "upstreamConnections": 300})
    site = bicep.one_resource(parsed, "Microsoft.Web/sites")
    assert scope.eval(site["properties"]["functionAppConfig"]["scaleAndConcurrency"])["alwaysReady"] == [
        {"name": "http", "instanceCount": 2}
    ]
    assert bicep.relay_app_settings(app, {"upstreamConnections": 300})["RELAY_UPSTREAM_CONNECTIONS"] == "300"


@pytest.mark.parametrize(
    ("param", "setting"),
    [
        ("maxBodyBytes", "RELAY_MAX_BODY_BYTES"),
        ("maxTokens", "RELAY_MAX_TOKENS"),
        ("maxN", "RELAY_MAX_N"),
        ("upstreamTimeoutSeconds", "RELAY_UPSTREAM_TIMEOUT_S"),
    ],
)
def test_a_value_main_bicep_accepts_is_one_the_relay_starts_with_and_the_next_is_refused_at_deployment(param: str, setting: str) -> None:
    declared = bicep.parse_bicep(bicep.MAIN)["parameters"][param]
    low, high = bicep.decorator(declared, "min_value"), bicep.decorator(declared, "max_value")
    assert isinstance(low, int) and isinstance(high, int), (param, low, high)
    for value in (low, high):
        load_settings({**REQUIRED_SETTINGS, setting: str(value)})
    for value in (low - 1, high + 1):
        with pytest.raises(ValueError):
            load_settings({**REQUIRED_SETTINGS, setting: str(value)})


def readme_configuration() -> tuple[str, set[str]]:
    """README.md's Configuration section, and the names in the first column of its settings table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration (app settings)", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ", 1)[0] for line in section.splitlines() if line.startswith("| `")]
    return section, {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row)}


def test_the_readme_settings_table_lists_exactly_the_settings_the_relay_reads() -> None:
    read: set[str] = set()
    for app in APPS:  # between them, both authentication modes
        env = RecordingEnv({**bicep.relay_app_settings(app), **PLATFORM_INJECTED})
        load_settings(env)
        telemetry_settings(env)  # the telemetry settings are read beside the relay's (shared/telemetry_config.py)
        read |= env.read
    section, table = readme_configuration()
    assert sorted(read - set(PLATFORM_INJECTED) - table) == [], "read by the relay, missing from the table"
    assert sorted(table - read) == [], "in the table, read by nothing"
    # What the platform sets is named beside the table, as the platform's.
    assert all(f"`{name}`" in section for name in PLATFORM_INJECTED)


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_telemetry_goes_through_the_relays_own_exporter_once_authenticated_as_the_identity(app: Path) -> None:
    """The worker attaches trace contexts and leaves export to the relay (PYTHON_ENABLE_OPENTELEMETRY); its own
    Azure Monitor set-up (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY) would send without a credential and be refused."""
    settings = bicep.relay_app_settings(app)
    assert settings["PYTHON_ENABLE_OPENTELEMETRY"] == "true"
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in settings
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"ClientId={settings['AZURE_CLIENT_ID']};Authorization=AAD"


def test_the_host_exports_opentelemetry_and_samples_nothing_away() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["telemetryMode"] == "OpenTelemetry"
    assert host["logging"]["applicationInsights"]["samplingSettings"]["isEnabled"] is False


@pytest.mark.parametrize(
    "overrides",
    [
        {"createFoundryProject": True},
        {
            "foundryProjectResourceId": "/subscriptions/0000/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts/ais-shared/projects/chat"
        },
    ],
    ids=["created", "existing"],
)
def test_a_foundry_project_turns_the_responses_api_on_with_its_key_in_the_relays_table(overrides: dict[str, object]) -> None:
    settings = bicep.relay_app_settings(APPS[0], overrides)  # type: ignore[arg-type]
    loaded = load_settings({**settings, **PLATFORM_INJECTED})
    assert loaded.responses.project_endpoint == bicep.EXAMPLE_OUTPUTS["foundryProject.outputs.endpoint"]
    assert (loaded.responses.seal_key, loaded.responses.table) == (b"", "relayresponses")
    assert "RELAY_RESPONSES_SEAL_KEY" not in settings
    parsed, scope = bicep.module_scope(APPS[0], "foundryProject", overrides)  # type: ignore[arg-type]
    role = bicep.one_resource(parsed, "Microsoft.Authorization/roleAssignments")
    # Azure AI User (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/ai-machine-learning), on the project.
    assert scope.eval(role["properties"]["roleDefinitionId"]).endswith("/roleDefinitions/53ca6127-db72-4b80-b1b0-d745d6d5456d")
    assert scope.eval(role["scope"]) == "project"
    if overrides.get("createFoundryProject"):
        # A created account: Entra ID only, with its own identity (checkov cannot read a conditional resource's body).
        account = bicep.resources(parsed, "Microsoft.CognitiveServices/accounts")["newAccount"]
        assert scope.eval(account["properties"]["disableLocalAuth"]) is True
        assert scope.eval(account["identity"]["type"]) == "SystemAssigned"


def test_without_a_foundry_project_the_responses_api_stays_off() -> None:
    settings = bicep.relay_app_settings(APPS[0])
    assert settings["AZURE_AI_PROJECT_ENDPOINT"] == ""
    assert load_settings({**settings, **PLATFORM_INJECTED}).responses.enabled is False
