"""Each example .bicepparam sets every required parameter of
main.bicep (and nothing main.bicep does not declare), and the per-app choices
that need companions have them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep

MAIN = bicep.parse_bicep(bicep.MAIN)
APPS = bicep.example_param_files()
APP_IDS = [p.stem for p in APPS]

BOUNDS: dict[str, Callable[[Any, int], bool]] = {
    "min_length": lambda value, bound: len(value) >= bound,
    "max_length": lambda value, bound: len(value) <= bound,
    "min_value": lambda value, bound: bool(value >= bound),
    "max_value": lambda value, bound: bool(value <= bound),
}


def test_main_has_required_parameters() -> None:
    # The guard below is only meaningful if main.bicep has required parameters.
    assert {"environmentName", "location", "applicationName", "spaOrigins", "openAiResourceId"} <= bicep.required_params(MAIN)


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_example_uses_main_bicep(app: Path) -> None:
    assert bicep.parse_bicepparam(app).using == bicep.MAIN


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_example_sets_every_required_parameter(app: Path) -> None:
    missing = bicep.required_params(MAIN) - set(bicep.parse_bicepparam(app).values)
    assert not missing, f"{app.name} does not set required parameter(s) {sorted(missing)} of main.bicep"


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_example_sets_only_declared_parameters(app: Path) -> None:
    unknown = set(bicep.parse_bicepparam(app).values) - set(MAIN["parameters"])
    assert not unknown, f"{app.name} sets parameter(s) main.bicep does not declare: {sorted(unknown)}"


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_example_values_satisfy_main_constraints(app: Path) -> None:
    scope = bicep.main_scope(app)
    for name, param in MAIN["parameters"].items():
        value = scope.lookup(name)
        allowed = bicep.decorator(param, "allowed")
        if allowed is not None:
            assert value in allowed, f"{name}={value!r} not in {allowed}"
        for kind, check in BOUNDS.items():
            bound = bicep.decorator(param, kind)
            if bound is not None:
                assert check(value, bound), f"{name}={value!r} violates @{kind}({bound})"


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_key_mode_has_its_vault_and_secret_name(app: Path) -> None:
    scope = bicep.main_scope(app)
    if scope.lookup("openAiAuthMode") == "key":
        assert scope.lookup("keyVaultResourceId"), "key mode needs keyVaultResourceId"
        assert scope.lookup("openAiKeySecretName"), "key mode needs openAiKeySecretName"
    if scope.lookup("keyVaultResourceId"):
        assert "/providers/Microsoft.KeyVault/vaults/" in scope.lookup("keyVaultResourceId")


def test_the_two_examples_show_different_choices() -> None:
    assert len(APPS) >= 2
    scopes = [bicep.main_scope(app) for app in APPS[:2]]
    for name in ("applicationName", "spaOrigins", "openAiDeployments", "openAiAuthMode"):
        first, second = (s.lookup(name) for s in scopes)
        assert first != second, f"the two examples should differ in {name}"


# ---- the template itself refuses key mode without a vault; nothing else needs one -----------

VAULT_ID = "/subscriptions/00000000-0000-4000-8000-0000000000cc/resourceGroups/rg-kv/providers/Microsoft.KeyVault/vaults/kv-relay"
KEY_MODE = {"openAiAuthMode": "key", "keyVaultResourceId": VAULT_ID, "openAiKeySecretName": "aoai-api-key"}


def _relay_key_vault_settings(overrides: dict[str, Any]) -> tuple[str, str]:
    """What main.bicep passes the relay and the Key Vault role for helpdesk + overrides."""
    app = bicep.APPS_DIR / "helpdesk.bicepparam"
    main = bicep.main_scope(app, {"enableLoginFlow": False, **overrides})
    relay = bicep.module_config(MAIN["modules"]["relay"])["params"]
    role = bicep.module_config(MAIN["modules"]["keyVaultRole"])["params"]
    return main.eval(relay["keyVaultUrl"]), main.eval(role["keyVaultName"])


@pytest.mark.parametrize(
    "missing",
    [{"keyVaultResourceId": ""}, {"openAiKeySecretName": ""}, {"keyVaultResourceId": "", "openAiKeySecretName": ""}],
)
def test_template_refuses_key_mode_without_its_vault(missing: dict[str, Any]) -> None:
    with pytest.raises(bicep.BicepFail, match=r"Key mode.*keyVaultResourceId.*openAiKeySecretName"):
        _relay_key_vault_settings({**KEY_MODE, **missing})


def test_template_accepts_complete_vault_settings_and_needs_none_otherwise() -> None:
    assert _relay_key_vault_settings(KEY_MODE) == ("https://kv-relay.vault.azure.net", "kv-relay")
    # Managed identity, with or without the login flow: no vault, and no failure.
    for login_flow in (False, True):
        assert _relay_key_vault_settings(
            {"openAiAuthMode": "managed-identity", "keyVaultResourceId": "", "enableLoginFlow": login_flow}
        ) == ("", "")
    assert bicep.module_config(MAIN["modules"]["keyVaultRole"])["condition"] == "isKeyMode"


# ---- the login flow: only once its credential can exist, only in the deployment's tenant ------------


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_no_example_turns_the_login_flow_on_before_its_credential_exists(app: Path) -> None:
    # The federated credential trusts the relay identity, which the first deployment creates: a first
    # deployment with the login flow on would send every sign-in to a registration that cannot redeem it.
    assert bicep.main_scope(app).lookup("enableLoginFlow") is False


def _relay_login_flow(overrides: dict[str, Any]) -> bool:
    main = bicep.main_scope(bicep.APPS_DIR / "helpdesk.bicepparam", overrides)
    return bool(main.eval(bicep.module_config(MAIN["modules"]["relay"])["params"]["enableLoginFlow"]))


def test_the_login_flow_is_refused_with_registrations_in_another_tenant() -> None:
    other_tenant = bicep.parse_bicepparam(bicep.APPS_DIR / "helpdesk.bicepparam").values["tenantId"]
    assert other_tenant != bicep.DEPLOYMENT_TENANT
    with pytest.raises(bicep.BicepFail, match=r"enableLoginFlow needs tenantId to be the tenant of this deployment"):
        _relay_login_flow({"enableLoginFlow": True, "tenantId": other_tenant})


def test_the_login_flow_is_accepted_in_the_deployments_tenant_and_bearer_tokens_in_any() -> None:
    assert _relay_login_flow(bicep.LOGIN_FLOW_ON) is True
    assert _relay_login_flow({**bicep.LOGIN_FLOW_ON, "tenantId": bicep.DEPLOYMENT_TENANT.upper()}) is True
    assert _relay_login_flow({"enableLoginFlow": False}) is False  # the example's own tenantId


# ---- scale-out ceiling: the platform's bounds ----------------------------------------------------------


def test_the_scale_out_ceiling_follows_the_platforms_bounds() -> None:
    # "Currently the lowest maximum instance count value is 1, and the highest ... 1000":
    # https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out
    module = bicep.parse_bicep(bicep.FUNCTION_APP)
    for template in (MAIN, module):
        param = template["parameters"]["maximumInstanceCount"]
        assert (bicep.decorator(param, "min_value"), bicep.decorator(param, "max_value")) == (1, 1000)
    assert "regional compute quota" in bicep.decorator(MAIN["parameters"]["maximumInstanceCount"], "description")
