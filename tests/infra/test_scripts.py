"""The deployment scripts: valid bash (shellcheck-clean where shellcheck is
installed), the azd hook maps an environment to its parameter file, and the
Entra registration script (run against a stand-in for the Azure CLI) creates
what the templates expect and nothing they refuse."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.infra import bicep, fake_az

SCRIPTS = sorted([*(bicep.ROOT / "infra" / "scripts").glob("*.sh"), *(bicep.ROOT / "scripts").glob("*.sh")])


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_is_valid_bash(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout


PLACEHOLDER_ID = re.compile(r"\b[0-9a-f]{8}-0000-4000-8000-[0-9a-f]{12}\b")


def _run_hook(
    tmp_path: Path, command: tuple[str, ...] = ("bash", "select-app-params.sh"), *, filled_in: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a preprovision hook (its interpreter, then its file name) in a copy of infra/ under ``tmp_path/repo``.

    With ``filled_in`` the copied example parameter files carry IDs of their own instead of the placeholders,
    as a deployer's files do."""
    # A copy of the tree the hook touches, so the real infra/ stays untouched.
    root = tmp_path / "repo"
    shutil.copytree(bicep.ROOT / "infra", root / "infra")
    if filled_in:
        for app in (root / "infra" / "bicep" / "apps").glob("*.bicepparam"):
            text = app.read_text(encoding="utf-8")
            app.write_text(PLACEHOLDER_ID.sub(lambda m: m.group(0).replace("-0000-4000-8000-", "-7c3e-4b1a-9d2f-"), text), encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if k not in ("RELAY_APP", "AZURE_ENV_NAME")}
    return subprocess.run(
        [*command[:-1], str(root / "infra" / "scripts" / command[-1])],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("app", [p.stem for p in bicep.example_param_files()])
def test_azd_environment_selects_its_parameter_file(tmp_path: Path, app: str) -> None:
    result = _run_hook(tmp_path, AZURE_ENV_NAME=app)
    assert result.returncode == 0, result.stderr
    generated = tmp_path / "repo" / "infra" / "bicep" / "main.bicepparam"
    params = bicep.parse_bicepparam(generated)
    assert params.using == (tmp_path / "repo" / "infra" / "bicep" / "main.bicep").resolve()
    assert params.values == bicep.parse_bicepparam(tmp_path / "repo" / "infra" / "bicep" / "apps" / f"{app}.bicepparam").values
    assert not PLACEHOLDER_ID.search(generated.read_text(encoding="utf-8"))


@pytest.mark.parametrize("app", [p.stem for p in bicep.example_param_files()])
def test_the_examples_placeholder_ids_are_refused(tmp_path: Path, app: str) -> None:
    example = (bicep.APPS_DIR / f"{app}.bicepparam").read_text(encoding="utf-8")
    placeholders = PLACEHOLDER_ID.findall(example)
    assert placeholders, "the examples carry placeholder IDs"
    result = _run_hook(tmp_path, filled_in=False, AZURE_ENV_NAME=app)
    assert result.returncode != 0
    assert "still holds the examples' placeholder IDs" in result.stderr
    assert all(placeholder in result.stderr for placeholder in placeholders), result.stderr
    assert not (tmp_path / "repo" / "infra" / "bicep" / "main.bicepparam").exists(), "nothing is written for azd to deploy"


def test_relay_app_overrides_the_environment_name(tmp_path: Path) -> None:
    app = bicep.example_param_files()[0].stem
    assert _run_hook(tmp_path, AZURE_ENV_NAME="some-env", RELAY_APP=app).returncode == 0


def test_unknown_app_fails_clearly(tmp_path: Path) -> None:
    result = _run_hook(tmp_path, AZURE_ENV_NAME="no-such-app")
    assert result.returncode != 0
    assert "no parameter file" in result.stderr


def _commands(text: str) -> list[str]:
    """The shell commands in the fenced blocks of a Markdown text, in order, without their comments."""
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    return [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_parameter_file_is_selected_before_azd_up_or_provision_starts() -> None:
    # azd picks main.bicepparam only if it exists when azd initialises its Bicep provider (azure-dev
    # bicep_provider.go, Initialize), which `azd up` does before its provision step's preprovision hook
    # (azure-dev#5806). Command hooks run before their command's action, so the selection runs as preup
    # and as preprovision, the same on posix and Windows.
    hooks = yaml.safe_load((bicep.ROOT / "azure.yaml").read_text(encoding="utf-8"))["hooks"]
    assert hooks["preup"] == hooks["preprovision"]
    assert hooks["preup"]["posix"]["run"] == "bash infra/scripts/select-app-params.sh"
    assert hooks["preup"]["windows"]["run"] == "./infra/scripts/select-app-params.ps1"


def test_the_documented_path_checks_the_parameter_file_before_azd_up() -> None:
    doc = (bicep.ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    sections = [doc.split("### The path", 1)[1].split("\n## ", 1)[0], doc.split("## 3. Deploy with azd", 1)[1].split("\n### ", 1)[0]]
    azure_yaml = (bicep.ROOT / "azure.yaml").read_text(encoding="utf-8").splitlines()
    in_azure_yaml = [line.lstrip("# ").split("#", 1)[0].strip() for line in azure_yaml if line.startswith("#")]
    for commands in [*(_commands(section) for section in sections), in_azure_yaml]:
        ups = [i for i, command in enumerate(commands) if command == "azd up"]
        checks = [i for i, command in enumerate(commands) if command == "azd hooks run preprovision"]
        news = [i for i, command in enumerate(commands) if command.startswith("azd env new")]
        assert news and checks and ups and news[0] < checks[0] < ups[0], commands


def test_generated_parameter_file_is_gitignored() -> None:
    assert "main.bicepparam" in (bicep.BICEP_DIR / ".gitignore").read_text().split()


# ---- register-entra-apps.sh against a stand-in Azure CLI -----------------------------------

REGISTER = bicep.ROOT / "infra" / "scripts" / "register-entra-apps.sh"
IDENTITY_PRINCIPAL_ID = "9a8b7c6d-0000-4000-8000-0000000000d1"
PRODUCTION_ORIGIN = "https://helpdesk.contoso.example"
RELAY_HOST = "func-helpdesk-abc123.azurewebsites.net"
LOGIN_FLOW = ("--login-flow", "--relay-host", RELAY_HOST, "--identity-principal-id", IDENTITY_PRINCIPAL_ID)


def _register(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    log = tmp_path / "az-calls.jsonl"
    fake_az.install(tmp_path / "bin", log)
    result = subprocess.run(
        ["bash", str(REGISTER), "--app", "helpdesk", *args],
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, fake_az.calls(log)


def _patches(calls: list[list[str]], object_id: str) -> list[dict[str, object]]:
    """Bodies of the Graph PATCH requests the script sent for one application object."""
    return [
        json.loads(call[call.index("--body") + 1])
        for call in calls
        if call[:1] == ["rest"] and "PATCH" in call and call[call.index("--uri") + 1].endswith(f"/applications/{object_id}")
    ]


def _spa_redirect_uris(calls: list[list[str]]) -> list[str]:
    spa_object = fake_az.OBJECT_IDS[fake_az.APP_IDS["spa"]]
    (uris,) = [body["spa"]["redirectUris"] for body in _patches(calls, spa_object) if "spa" in body]  # type: ignore[index]
    assert isinstance(uris, list)
    return uris


def test_login_flow_trusts_the_relay_identity_with_a_federated_credential(tmp_path: Path) -> None:
    result, calls = _register(tmp_path, "--spa-origin", PRODUCTION_ORIGIN, *LOGIN_FLOW)
    assert result.returncode == 0, result.stderr
    api_app = fake_az.APP_IDS["api"]
    (create,) = [call for call in calls if call[:4] == ["ad", "app", "federated-credential", "create"]]
    assert create[create.index("--id") + 1] == api_app
    credential = json.loads(create[create.index("--parameters") + 1])
    # https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
    assert credential["issuer"] == f"https://login.microsoftonline.com/{fake_az.TENANT_ID}/v2.0"
    assert credential["subject"] == IDENTITY_PRINCIPAL_ID
    assert credential["audiences"] == ["api://AzureADTokenExchange"]
    web = [body["web"] for body in _patches(calls, fake_az.OBJECT_IDS[api_app]) if "web" in body]
    assert web == [
        {"redirectUris": [f"https://{RELAY_HOST}/.auth/login/aad/callback"], "implicitGrantSettings": {"enableIdTokenIssuance": True}}
    ]


@pytest.mark.parametrize(
    ("cloud", "audience"),
    [
        ("AzureCloud", "api://AzureADTokenExchange"),
        ("AzureUSGovernment", "api://AzureADTokenExchangeUSGov"),
        ("AzureChinaCloud", "api://AzureADTokenExchangeChina"),
    ],
)
def test_the_federated_credential_has_its_clouds_audience(tmp_path: Path, cloud: str, audience: str) -> None:
    # "The value must be one of the following depending on the target cloud":
    # https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
    result, calls = _register(tmp_path, "--spa-origin", PRODUCTION_ORIGIN, *LOGIN_FLOW, FAKE_AZ_CLOUD=cloud)
    assert result.returncode == 0, result.stderr
    (create,) = [call for call in calls if call[:4] == ["ad", "app", "federated-credential", "create"]]
    credential = json.loads(create[create.index("--parameters") + 1])
    assert credential["audiences"] == [audience]
    assert credential["issuer"] == f"{fake_az.LOGIN_ENDPOINTS[cloud]}/{fake_az.TENANT_ID}/v2.0"


def test_a_cloud_without_a_known_audience_is_refused_before_any_change(tmp_path: Path) -> None:
    result, calls = _register(tmp_path, "--spa-origin", PRODUCTION_ORIGIN, *LOGIN_FLOW, FAKE_AZ_CLOUD="AzureStackCloud")
    assert result.returncode != 0 and "no known token exchange audience" in result.stderr and "AzureStackCloud" in result.stderr
    assert [call[:2] for call in calls] == [["cloud", "show"]]


def test_the_script_never_creates_a_client_secret(tmp_path: Path) -> None:
    result, calls = _register(tmp_path, "--spa-origin", PRODUCTION_ORIGIN, *LOGIN_FLOW)
    assert result.returncode == 0, result.stderr
    assert calls, "the stand-in CLI saw no call"
    for call in calls:
        text = " ".join(call).lower()
        assert call[:3] != ["ad", "app", "credential"], call
        assert not any(word in text for word in ("passwordcredentials", "addpassword", "keyvault", "secret")), call
    source = REGISTER.read_text(encoding="utf-8")
    assert "credential reset" not in source and "addPassword" not in source and "passwordCredentials" not in source


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:5173",
        "https://localhost:5173",
        "http://127.0.0.1:8080",
        "http://helpdesk.contoso.example",
        "https://*.contoso.example",
    ],
)
def test_a_production_registration_refuses_development_origins(tmp_path: Path, origin: str) -> None:
    result, calls = _register(tmp_path, "--spa-origin", PRODUCTION_ORIGIN, "--spa-origin", origin)
    assert result.returncode != 0
    assert f"origin '{origin}' is not allowed in a production registration" in result.stderr
    assert calls == [], "nothing may be registered before the arguments are checked"


def test_a_production_run_removes_development_redirect_uris(tmp_path: Path) -> None:
    registered = [PRODUCTION_ORIGIN, "http://localhost:5173"]
    result, calls = _register(tmp_path, "--spa-origin", PRODUCTION_ORIGIN, FAKE_AZ_SPA_REDIRECT_URIS=json.dumps(registered))
    assert result.returncode == 0, result.stderr
    assert _spa_redirect_uris(calls) == [PRODUCTION_ORIGIN]
    assert "removed SPA redirect URIs: http://localhost:5173" in result.stderr
    assert "param environmentType = 'production'" in result.stdout


def test_a_development_registration_may_list_local_origins(tmp_path: Path) -> None:
    result, calls = _register(
        tmp_path, "--environment-type", "development", "--spa-origin", PRODUCTION_ORIGIN, "--spa-origin", "http://localhost:5173"
    )
    assert result.returncode == 0, result.stderr
    assert _spa_redirect_uris(calls) == [PRODUCTION_ORIGIN, "http://localhost:5173"]
    assert "param environmentType = 'development'" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--login-flow", "--relay-host", "func-x.azurewebsites.net"], "--login-flow needs --relay-host and --identity-principal-id"),
        (
            ["--login-flow", "--relay-host", "func-x.azurewebsites.net", "--identity-principal-id", "func-x"],
            "must be the identity's object (principal) ID",
        ),
        (["--environment-type", "staging"], "--environment-type must be production or development"),
    ],
)
def test_bad_arguments_are_refused_before_any_change(tmp_path: Path, args: list[str], message: str) -> None:
    result, calls = _register(tmp_path, "--spa-origin", PRODUCTION_ORIGIN, *args)
    assert result.returncode != 0 and message in result.stderr
    assert calls == []


# ---- the Windows (pwsh) hook agrees with the posix one ------------------------------------

HOOK_SH = bicep.ROOT / "infra" / "scripts" / "select-app-params.sh"
HOOK_PS1 = bicep.ROOT / "infra" / "scripts" / "select-app-params.ps1"
APP_NAME_RULE = re.compile(r"\^\[a-z0-9\]\[a-z0-9-\]\{0,\d+\}\$")


def test_azure_yaml_runs_the_hook_on_posix_and_windows() -> None:
    hooks = yaml.safe_load((bicep.ROOT / "azure.yaml").read_text(encoding="utf-8"))["hooks"]["preprovision"]
    assert hooks["posix"]["shell"] == "sh" and hooks["posix"]["run"] == "bash infra/scripts/select-app-params.sh"
    assert hooks["windows"]["shell"] == "pwsh" and hooks["windows"]["run"] == "./infra/scripts/select-app-params.ps1"
    for hook in hooks.values():
        assert hook["continueOnError"] is False and hook["interactive"] is False
    assert HOOK_SH.is_file() and HOOK_PS1.is_file()


def test_the_two_hooks_pick_the_same_file_by_the_same_rules() -> None:
    # No PowerShell here: compare what each script says, statement by statement.
    sh, ps1 = HOOK_SH.read_text(encoding="utf-8"), HOOK_PS1.read_text(encoding="utf-8")
    # The same app: RELAY_APP first, then the azd environment name.
    assert re.search(r'app="\$\{RELAY_APP:-\$\{AZURE_ENV_NAME:-\}\}"', sh)
    assert re.search(
        r"\$app = if \(\$env:RELAY_APP\) \{ \$env:RELAY_APP \} elseif \(\$env:AZURE_ENV_NAME\) \{ \$env:AZURE_ENV_NAME \}", ps1
    )
    # The same name rule, case-sensitive in both (bash =~, pwsh -cnotmatch).
    assert APP_NAME_RULE.findall(sh) == APP_NAME_RULE.findall(ps1) == ["^[a-z0-9][a-z0-9-]{0,39}$"]
    assert "-cnotmatch '^[a-z0-9][a-z0-9-]{0,39}$'" in ps1
    # The same source and target files.
    assert 'source_file="$root/infra/bicep/apps/$app.bicepparam"' in sh
    assert 'target_file="$root/infra/bicep/main.bicepparam"' in sh
    assert '$sourceFile = Join-Path $root "infra/bicep/apps/$app.bicepparam"' in ps1
    assert "$targetFile = Join-Path $root 'infra/bicep/main.bicepparam'" in ps1
    # The same using check and rewrite.
    assert "^using '../main.bicep'" in sh and "using './main.bicep'" in sh
    assert r"^using '\.\./main\.bicep'" in ps1 and "using './main.bicep'" in ps1
    # The same messages for the same failures.
    for message in (
        "set RELAY_APP or run inside an azd environment (AZURE_ENV_NAME)",
        "no parameter file",
        "must start with: using '../main.bicep'",
        "still holds the examples' placeholder IDs (line:ID):",
        "replace them with your own: register-entra-apps.sh prints the Entra IDs (docs/deployment.md)",
    ):
        assert message in sh and message in ps1, message
    # The same placeholder pattern.
    assert "PLACEHOLDER_ID='[0-9a-fA-F]{8}-0000-4000-8000-[0-9a-fA-F]{12}'" in sh
    assert "$placeholderId = '[0-9a-fA-F]{8}-0000-4000-8000-[0-9a-fA-F]{12}'" in ps1
    # The root is two levels above the script in both.
    assert '"$(dirname "${BASH_SOURCE[0]}")/../.."' in sh and "Join-Path $PSScriptRoot '../..'" in ps1


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="PowerShell (pwsh) is not installed; the static comparison above still runs")
@pytest.mark.parametrize("app", [p.stem for p in bicep.example_param_files()])
def test_the_pwsh_hook_writes_what_the_posix_hook_writes(tmp_path: Path, app: str) -> None:
    outputs = []
    for command in (("bash", "select-app-params.sh"), ("pwsh", "-NoProfile", "-File", "select-app-params.ps1")):
        result = _run_hook(tmp_path / command[0], command, AZURE_ENV_NAME=app)
        assert result.returncode == 0, result.stderr
        generated = tmp_path / command[0] / "repo" / "infra" / "bicep" / "main.bicepparam"
        outputs.append(generated.read_text(encoding="utf-8").split("\n", 1)[1])
    assert outputs[0] == outputs[1]
