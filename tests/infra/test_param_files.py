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
