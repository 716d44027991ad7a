"""Every resource in infra/bicep type-checks against Azure's own resource types
(tests/infra/azure-types, the records the Bicep compiler uses), and the check
catches what it claims to catch."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.infra import azure_types, bicep

TEMPLATES = bicep.bicep_files()
TEMPLATE_IDS = [str(p.relative_to(bicep.BICEP_DIR)) for p in TEMPLATES]
APPS = bicep.example_param_files()

#: Site properties Flex Consumption rejects (ARM error 51021) although they type-check.
#: https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
FLEX_REJECTED_SITE_CONFIG = frozenset(
    {
        "linuxFxVersion", "ftpsState", "use32BitWorkerProcess", "netFrameworkVersion",
        "functionsRuntimeScaleMonitoringEnabled", "preWarmedInstanceCount", "functionAppScaleLimit",
    }
)  # fmt: skip


@functools.cache
def _index() -> azure_types.TypeIndex:
    return azure_types.TypeIndex()


def _problems(path: Path) -> list[str]:
    problems, _ = azure_types.check_template(path, _index())
    return [str(p) for p in problems]


@pytest.mark.parametrize("path", TEMPLATES, ids=TEMPLATE_IDS)
def test_template_type_checks_against_the_azure_types(path: Path) -> None:
    assert _problems(path) == []


def test_the_vendored_type_files_are_exactly_the_ones_the_templates_use() -> None:
    used: set[Path] = set()
    for path in TEMPLATES:
        _, files = azure_types.check_template(path, _index())
        used |= files
    assert used == set(_index().files), (
        f"unused: {sorted(map(str, set(_index().files) - used))}; missing: {sorted(map(str, used - set(_index().files)))}"
    )


def test_the_vendored_types_say_where_they_come_from() -> None:
    readme = (azure_types.TYPES_DIR / "README.md").read_text(encoding="utf-8")
    assert "https://github.com/Azure/bicep-types-az" in readme
    assert "MIT License" in (azure_types.TYPES_DIR / "LICENSE").read_text(encoding="utf-8")


# ---- mutations of the real templates: the check must fail -----------------------------


def _mutated(tmp_path: Path, module: str, old: str, new: str) -> list[str]:
    source = (bicep.MODULES_DIR / module).read_text(encoding="utf-8")
    assert source.count(old) == 1, f"mutation target {old!r} not found once in {module}"
    target = tmp_path / module
    target.write_text(source.replace(old, new), encoding="utf-8")
    return _problems(target)


def test_a_misspelled_property_fails_the_check(tmp_path: Path) -> None:
    problems = _mutated(tmp_path, "functionapp.bicep", "httpsOnly: true", "httpsOnyl: true")
    assert len(problems) == 1, problems
    assert "properties.httpsOnyl: unknown property; did you mean 'httpsOnly'?" in problems[0]


def test_a_value_outside_a_closed_enum_fails_the_check(tmp_path: Path) -> None:
    problems = _mutated(
        tmp_path, "functionapp.bicep", "unauthenticatedClientAction: 'Return401'", "unauthenticatedClientAction: 'Return410'"
    )
    assert len(problems) == 1, problems
    assert "properties.globalValidation.unauthenticatedClientAction: 'Return410' is not one of the allowed values" in problems[0]
    assert "'Return401'" in problems[0]


#: (module, text, replacement, the one problem expected; "" for none)
MISTAKES = {
    "enum": ("storage.bicep", "publicAccess: 'None'", "publicAccess: 'Private'", "properties.publicAccess: 'Private' is not one of"),
    "scalar": ("functionapp.bicep", "http20Enabled: true", "http20Enabled: 'true'", "properties.siteConfig.http20Enabled: expected boolean, got string"),
    "nested-enum": ("functionapp.bicep", "type: 'UserAssigned'", "type: 'Managed'", "identity.type: 'Managed' is not one of"),
    "case": ("monitoring.bicep", "DisableLocalAuth: true", "disableLocalAuth: true", "spelled 'disableLocalAuth'; the type spells it 'DisableLocalAuth'"),
    "read-only": ("monitoring.bicep", "retentionInDays: retentionInDays", "retentionInDays: retentionInDays\n    customerId: 'x'", "properties.customerId: read-only"),
    "required": ("openai-role.bicep", "    principalId: principalId\n", "", "properties.principalId: missing required property"),
    "discriminator": ("functionapp.bicep", "name: 'authsettingsV2'", "name: 'authSettingsV3'", "name: 'authSettingsV3' is not a known name"),
    "api-version": ("identity.bicep", "userAssignedIdentities@2024-11-30", "userAssignedIdentities@2099-01-01", "unknown resource type or API version"),
    "type": ("identity.bicep", "Microsoft.ManagedIdentity/userAssignedIdentities@", "Microsoft.ManagedIdentity/userAssignedIdentitys@", "no version of this type"),
    "bounds": ("storage.bicep", "@maxLength(24)", "@maxLength(24)\n@allowed([\n  'st'\n])", "name: length of 'st' (an @allowed value of parameter name) is below the minimum 3"),
    "control": ("storage.bicep", "accessTier: 'Hot'", "accessTier: 'Cool'", ""),
}  # fmt: skip


@pytest.mark.parametrize(("module", "old", "new", "expected"), MISTAKES.values(), ids=MISTAKES.keys())
def test_each_kind_of_mistake_is_reported(tmp_path: Path, module: str, old: str, new: str, expected: str) -> None:
    problems = _mutated(tmp_path, module, old, new)
    if not expected:
        assert problems == []  # the control: a harmless edit reports nothing
        return
    assert len(problems) == 1, problems
    assert expected in problems[0]


# ---- the resolution rules, on small templates ------------------------------------------


def _check_source(tmp_path: Path, source: str) -> list[str]:
    path = tmp_path / "probe.bicep"
    path.write_text(source, encoding="utf-8")
    return [f"{p.path}: {p.message}" for p in azure_types.check_template(path, _index())[0]]


CONTAINER = "resource c 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {{\n  name: 'c'\n  properties: {{\n    publicAccess: {value}\n  }}\n}}\n"


@pytest.mark.parametrize(
    ("declarations", "value", "problem"),
    [
        ("var access = 'Blob'\n", "access", None),
        ("var access = 'Public'\n", "access", "'Public' is not one of"),
        ("param access string\n", "access", None),
        (
            "@allowed([\n  'None'\n  'Public'\n])\nparam access string\n",
            "access",
            "'Public' (an @allowed value of parameter access) is not one of",
        ),
        ("param access int\n", "access", "got parameter access of type int"),
        ("param on bool\n", "on ? 'Blob' : 'Open'", "'Open' is not one of"),
        ("param name string\n", "'${name}'", None),
        ("", "any('Open')", None),
        ("", "length('x')", "got length() of type int"),
    ],
    ids=[
        "variable",
        "bad-variable",
        "string-param",
        "allowed-values",
        "int-param",
        "conditional-branch",
        "interpolation",
        "any",
        "function",
    ],
)
def test_values_are_resolved_where_they_are_literal(tmp_path: Path, declarations: str, value: str, problem: str | None) -> None:
    problems = _check_source(tmp_path, declarations + CONTAINER.format(value=value))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_loops_and_concatenated_arrays_are_checked_item_by_item(tmp_path: Path) -> None:
    source = """param cidrs array
param extra bool
var rules = [for (cidr, i) in cidrs: {
  name: 'rule-${i}'
  priority: 100 + i
  ipAddress: cidr
  vnetTrafficTag: 'none'
}]
resource site 'Microsoft.Web/sites@2024-11-01' = {
  name: 'app'
  location: 'westeurope'
  properties: {
    siteConfig: {
      ipSecurityRestrictions: concat(rules, extra ? [
        {
          priority: 'first'
        }
      ] : [])
    }
  }
}
"""
    problems = _check_source(tmp_path, source)
    assert len(problems) == 2, problems
    assert sorted(problems) == [
        "properties.siteConfig.ipSecurityRestrictions[0].priority: expected integer, got string 'first'",
        "properties.siteConfig.ipSecurityRestrictions[].vnetTrafficTag: expected integer, got string 'none'",
    ]


def test_a_resource_type_at_the_wrong_scope_is_reported(tmp_path: Path) -> None:
    source = (
        "targetScope = 'subscription'\nresource plan 'Microsoft.Web/serverfarms@2024-11-01' = {\n  name: 'p'\n  location: 'westeurope'\n}\n"
    )
    assert _check_source(tmp_path, source) == [": cannot be deployed at subscription scope"]


# ---- plan rules the types do not know ----------------------------------------------------


def test_no_site_sets_a_property_flex_consumption_rejects() -> None:
    sites = [
        (path, body) for path in TEMPLATES for body in bicep.resources(bicep.parse_bicep(path), "Microsoft.Web/sites").values()
    ]
    assert sites, "expected the function app"
    for path, body in sites:
        site_config = body["properties"]["siteConfig"]
        assert isinstance(site_config, dict), f"{path.name}: siteConfig must be an object literal so this check can see it"
        assert not FLEX_REJECTED_SITE_CONFIG & set(site_config), f"{path.name}: {sorted(FLEX_REJECTED_SITE_CONFIG & set(site_config))}"
        assert not FLEX_REJECTED_SITE_CONFIG & set(body["properties"]), path.name
    for app in APPS:
        parsed, scope = bicep.module_scope(app, "relay")
        deployed = scope.eval(bicep.one_resource(parsed, "Microsoft.Web/sites")["properties"]["siteConfig"])
        assert not FLEX_REJECTED_SITE_CONFIG & set(deployed), app.name


def test_quoted_keys_are_checked_like_bare_ones(tmp_path: Path) -> None:
    source = "resource c 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {\n  name: 'c'\n  'properties': {\n    'publicAcess': 'None'\n  }\n}\n"
    assert _check_source(tmp_path, source) == ["properties.publicAcess: unknown property; did you mean 'publicAccess'?"]
