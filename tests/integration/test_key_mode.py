"""AZURE_OPENAI_AUTH=key: the key lives in Key Vault, is read with the managed identity, cached and rotated."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.servers import free_port
from tests.support.stack import Stack, key_mode, run_stack

INITIAL_KEY = "kv-held-aoai-key-0001"
ROTATED_KEY = "kv-held-aoai-key-0002"


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def key_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = key_mode(INITIAL_KEY)
    with run_stack(tmp_path_factory.mktemp("key"), env) as stack:
        yield stack


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.api}/v1", api_key=stack.token(), max_retries=0)


def ask(stack: Stack, text: str = "hello") -> str | None:
    return sdk(stack).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}]).choices[0].message.content


def test_key_from_key_vault_reaches_azure_openai_as_api_key_only(key_stack: Stack) -> None:
    assert ask(key_stack)
    record = key_stack.requests()[-1]
    assert record["auth"] == {"scheme": "api-key", "key_sha256": fingerprint(INITIAL_KEY), "valid": True, "authorization_header": False}
    stats = key_stack.stats()
    assert stats["keyvault_secret_reads"] == 1
    assert stats["token_requests"] == 1  # the vault token; Azure OpenAI itself got the key


def test_hundred_requests_one_key_vault_read(key_stack: Stack) -> None:
    for i in range(100):
        ask(key_stack, f"q{i}")
    assert key_stack.stats()["keyvault_secret_reads"] == 1


def test_rotation_is_invisible_to_the_caller(key_stack: Stack) -> None:
    before = key_stack.stats()
    seen = len(key_stack.requests())
    key_stack.emulator("PUT", "/_emulator/keyvault/secrets/azure-openai-key", {"value": ROTATED_KEY})
    key_stack.emulator("POST", "/_emulator/config", {"api_key": ROTATED_KEY})

    assert ask(key_stack, "after rotation")

    new_records = key_stack.requests()[seen:]
    assert [(r["status"], r["auth"]["key_sha256"]) for r in new_records] == [(401, fingerprint(INITIAL_KEY)), (200, fingerprint(ROTATED_KEY))]
    assert key_stack.stats()["keyvault_secret_reads"] == before["keyvault_secret_reads"] + 1
    assert ask(key_stack, "and again")
    assert key_stack.stats()["keyvault_secret_reads"] == before["keyvault_secret_reads"] + 1


def test_a_key_regenerated_before_the_vault_was_updated_is_a_502_and_a_log_line_naming_the_secret(key_stack: Stack) -> None:
    regenerated = "kv-held-aoai-key-0003"
    key_stack.emulator("POST", "/_emulator/config", {"api_key": regenerated})  # Azure OpenAI only; the vault lags
    reads = key_stack.stats()["keyvault_secret_reads"]
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            ask(key_stack, "after a careless rotation")
        assert (caught.value.status_code, caught.value.code) == (502, "upstream_error")
        with pytest.raises(openai.APIStatusError):
            ask(key_stack, "and once more")
        assert key_stack.stats()["keyvault_secret_reads"] == reads + 1, "re-read once, not once per request"
        hints = [json.loads(line) for line in key_stack.log_lines() if "relay.upstream_auth_rejected" in line]
        assert hints and "AZURE_OPENAI_KEY_SECRET_NAME" in hints[-1]["detail"] and hints[-1]["status"] == 401
        text = "\n".join(key_stack.log_lines())
        assert ROTATED_KEY not in text and regenerated not in text
    finally:
        key_stack.emulator("POST", "/_emulator/config", {"api_key": ROTATED_KEY})


def test_no_key_in_logs_error_bodies_or_me(key_stack: Stack) -> None:
    import urllib.request

    request = urllib.request.Request(f"{key_stack.api}/me", headers={"Authorization": f"Bearer {key_stack.token()}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        me = resp.read().decode()
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(key_stack).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    logs = key_stack.log_path.read_text()
    for key in (INITIAL_KEY, ROTATED_KEY):
        assert key not in logs and key not in me and key not in caught.value.response.text


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"AZURE_OPENAI_KEY_SECRET_NAME": "no-such-secret"}, "AZURE_OPENAI_KEY_SECRET_NAME"),
        ({"AZURE_KEYVAULT_URL": f"https://127.0.0.1:{free_port()}"}, "AZURE_KEYVAULT_URL"),
    ],
    ids=["secret-missing", "vault-unreachable"],
)
def test_key_vault_failure_is_502_and_the_log_says_what_to_check(tmp_path: Path, env: dict[str, str], setting: str) -> None:
    with run_stack(tmp_path, {"AZURE_OPENAI_AUTH": "key", "EMULATOR_API_KEY": INITIAL_KEY, **env}) as stack:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(stack).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        body = caught.value.response.text
        lines = stack.log_lines_once("relay.credential_error")
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"
    assert "https://" not in body and "Traceback" not in body and INITIAL_KEY not in body
    credential_lines = [json.loads(line) for line in lines if "relay.credential_error" in line]
    assert credential_lines and setting in credential_lines[0]["detail"]
    assert not any(INITIAL_KEY in line for line in lines)
