"""main.bicep as a deployer meets it: nested deployment names that cannot
collide between relays, the outputs docs/deployment.md promises, and GA API
versions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep

MAIN = bicep.parse_bicep(bicep.MAIN)
APPS = bicep.example_param_files()
APP_IDS = [p.stem for p in APPS]
DEPLOYMENT_DOC = bicep.ROOT / "docs" / "deployment.md"

#: ARM limit for a deployment name.
MAX_DEPLOYMENT_NAME = 64
#: The longest environmentName main.bicep accepts (@maxLength).
LONGEST_ENV = "app-" + "x" * 36


def _scope_kind(module: dict[str, Any]) -> str:
    """'own' (the relay's resource group), 'resource-group' (another one) or 'subscription'."""
    scope = bicep.module_config(module).get("scope")
    if scope == "rg":
        return "own"
    if scope is None:
        return "subscription"  # main.bicep is a subscription-scope template
    assert scope["function"]["type"] == "resource_group", scope
    return "resource-group"


def _deployment_names(app: Path, environment_name: str | None = None) -> dict[str, str]:
    overrides = {} if environment_name is None else {"environmentName": environment_name}
    scope = bicep.main_scope(app, overrides)
    return {name: scope.eval(bicep.module_config(module)["name"]) for name, module in MAIN["modules"].items()}


def test_the_max_length_assumption_holds() -> None:
    assert bicep.decorator(MAIN["parameters"]["environmentName"], "max_length") == len(LONGEST_ENV)


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
@pytest.mark.parametrize("environment_name", [None, LONGEST_ENV], ids=["example", "longest"])
def test_shared_scope_deployments_are_named_after_the_relay(app: Path, environment_name: str | None) -> None:
    # Nested deployments into a resource group other than the relay's own (the
    # Azure OpenAI and Key Vault groups, shared by many relays) or at
    # subscription scope must not share a name between relays: two apps
    # provisioning at once would overwrite each other's deployment.
    names = _deployment_names(app, environment_name)
    env = environment_name or bicep.main_scope(app).lookup("environmentName")
    shared = {name for name, module in MAIN["modules"].items() if _scope_kind(module) != "own"}
    assert {"openAiRole", "keyVaultRole"} <= shared
    for module in shared:
        assert env in names[module], f"deployment {module} ({names[module]}) does not name the relay"


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_deployment_names_are_valid_and_distinct(app: Path) -> None:
    for environment_name in (None, LONGEST_ENV):
        names = _deployment_names(app, environment_name)
        assert len(set(names.values())) == len(names), names
        for module, name in names.items():
            assert 1 <= len(name) <= MAX_DEPLOYMENT_NAME, f"{module}: {name!r} is {len(name)} characters"
            assert re.fullmatch(r"[-\w.()]+", name), f"{module}: {name!r}"
    # Two relays (different environment names) never share a deployment name.
    other = _deployment_names(app, "another-relay")
    assert not set(_deployment_names(app).values()) & set(other.values())


# ---- scope: one relay never changes subscription-wide settings ---------------------------

WIDER_THAN_RESOURCE_GROUP = {"subscription", "managementGroup", "tenant"}


def _scope_writes(path: Path, scope: str) -> list[str]:
    """'<file>: <type>' of every resource a template deploys above resource-group
    scope, when deployed at ``scope``, following its modules."""
    parsed = bicep.parse_bicep(path)
    declared = parsed["globals"]["scope"]["value"]
    assert declared == scope, f"{path.name} declares targetScope {declared} but is deployed at {scope}"
    writes = []
    for resource in parsed.get("resources", {}).values():
        if resource["existing"]:
            continue
        target = bicep.module_config(resource).get("scope")
        if isinstance(target, dict) and "function" in target:
            where = {"resource_group": "resourceGroup", "subscription": "subscription", "tenant": "tenant"}[target["function"]["type"]]
        elif target is not None:
            continue  # an extension resource (e.g. a role assignment) on another resource
        else:
            where = scope
        if where in WIDER_THAN_RESOURCE_GROUP:
            writes.append(f"{path.name}: {resource['type']}")
    for name, target_path in bicep.module_paths(path):
        module_scope = bicep.module_config(parsed["modules"][name]).get("scope")
        writes += _scope_writes(target_path, scope if module_scope is None else "resourceGroup")
    return writes


def test_the_per_app_deployment_writes_no_subscription_wide_setting() -> None:
    # main.bicep is subscription-scoped only to create the relay's resource
    # group; everything else lands in a resource group.
    assert _scope_writes(bicep.MAIN, "subscription") == ["main.bicep: Microsoft.Resources/resourceGroups"]


def test_the_scope_walk_sees_a_subscription_wide_module(tmp_path: Path) -> None:
    (tmp_path / "plan.bicep").write_text(
        "targetScope = 'subscription'\nresource p 'Microsoft.Security/pricings@2024-01-01' = {\n  name: 'AI'\n}\n"
    )
    main = tmp_path / "main.bicep"
    main.write_text("targetScope = 'subscription'\nmodule plan 'plan.bicep' = {\n  name: 'plan'\n}\n")
    assert _scope_writes(main, "subscription") == ["plan.bicep: Microsoft.Security/pricings"]


# ---- outputs --------------------------------------------------------------------------------


def _documented_outputs() -> tuple[set[str], set[str]]:
    """Output names and SPA_CONFIG keys from the outputs table in docs/deployment.md."""
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    section = text.split("### Outputs: what the SPA needs", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    names: set[str] = set()
    spa_keys: set[str] = set()
    for row in rows:
        first, use = row.split("|")[1:3]
        names.update(re.findall(r"`([A-Z_]+)`", first))
        if "`SPA_CONFIG`" in first:
            spa_keys.update(re.findall(r"`([a-zA-Z]+)`", use))
    return names, spa_keys


def test_the_outputs_table_is_where_the_test_reads_it() -> None:
    names, spa_keys = _documented_outputs()
    assert {"RELAY_URL", "RELAY_OPENAI_BASE_URL", "RELAY_API_SCOPE", "SPA_CONFIG"} <= names
    assert {"relayUrl", "openAiBaseUrl", "clientId", "scopes"} <= spa_keys


def test_every_documented_output_exists() -> None:
    names, _ = _documented_outputs()
    missing = names - set(MAIN["outputs"])
    assert not missing, f"docs/deployment.md promises outputs main.bicep lacks: {sorted(missing)}"


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_outputs_carry_what_the_spa_needs(app: Path) -> None:
    scope = bicep.main_scope(app)
    out = {name: scope.eval(output["value"]) for name, output in MAIN["outputs"].items()}
    relay_url = bicep.EXAMPLE_OUTPUTS["relay.outputs.url"]
    api_client = scope.lookup("relayApiClientId")
    tenant = scope.lookup("tenantId")

    assert out["RELAY_URL"] == relay_url
    assert out["RELAY_OPENAI_BASE_URL"] == f"{relay_url}/api/v1"
    assert out["RELAY_API_SCOPE"] == f"api://{api_client}/user_impersonation"
    assert out["AZURE_FUNCTION_NAME"] == bicep.EXAMPLE_OUTPUTS["relay.outputs.name"]
    assert out["AZURE_RESOURCE_GROUP"] == bicep.EXAMPLE_OUTPUTS["rg.name"]

    _, spa_keys = _documented_outputs()
    spa = out["SPA_CONFIG"]
    assert set(spa) == spa_keys, "SPA_CONFIG and its description in docs/deployment.md differ"
    assert spa["relayUrl"] == out["RELAY_URL"]
    assert spa["openAiBaseUrl"] == out["RELAY_OPENAI_BASE_URL"]
    assert spa["authority"] == f"https://login.microsoftonline.com/{tenant}"
    assert spa["tenantId"] == tenant
    assert spa["clientId"] == scope.lookup("spaClientId")
    assert spa["scopes"] == [out["RELAY_API_SCOPE"]]
    assert spa["models"] == scope.lookup("openAiDeployments")
    assert spa["defaultModel"] == spa["models"][0]
    assert spa["allowedOrigins"] == scope.lookup("spaOrigins")


def test_every_parameter_is_in_the_documented_settings_table() -> None:
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    section = text.split("## 2. Which setting comes from where", 1)[1].split("\n## ", 1)[0]
    documented = {name for line in section.splitlines() if line.startswith("| `") for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    missing = set(MAIN["parameters"]) - documented
    assert not missing, f"docs/deployment.md, 'Which setting comes from where', lacks main.bicep parameters {sorted(missing)}"


# ---- API versions ---------------------------------------------------------------------------


def _api_versions() -> list[tuple[Path, str, str]]:
    found = []
    for path in bicep.bicep_files():
        for resource in bicep.parse_bicep(path).get("resources", {}).values():
            found.append((path, resource["type"], resource["api_version"]))
    return found


# Resource types Azure offers in preview API versions only, and the newest of those the templates may use.
# Defender for Cloud workflow automation: 2019-01-01-preview and 2023-12-01-preview
# (https://learn.microsoft.com/azure/templates/microsoft.security/change-log/automations).
# Diagnostic settings: 2021-05-01-preview is the newest version; the GA ones (2015-07-01, 2016-09-01) predate the
# current resource body (https://learn.microsoft.com/azure/templates/microsoft.insights/change-log/diagnosticsettings).
PREVIEW_ONLY = {"Microsoft.Security/automations": "2023-12-01-preview", "Microsoft.Insights/diagnosticSettings": "2021-05-01-preview"}


def test_resources_use_ga_api_versions() -> None:
    versions = _api_versions()
    assert versions
    for path, type_, version in versions:
        if type_ in PREVIEW_ONLY:
            assert version == PREVIEW_ONLY[type_], f"{path.name}: {type_}@{version}, expected {PREVIEW_ONLY[type_]}"
            continue
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", version), f"{path.name}: {type_}@{version} is not a GA version"


def test_one_api_version_per_resource_type() -> None:
    seen: dict[str, set[str]] = {}
    for _, type_, version in _api_versions():
        seen.setdefault(type_.lower(), set()).add(version)
    mixed = {type_: versions for type_, versions in seen.items() if len(versions) > 1}
    assert not mixed, f"resource types declared with several API versions: {mixed}"
