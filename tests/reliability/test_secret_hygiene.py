"""Secret hygiene: a whole session with known secrets, then a search of every log line and error body.

Known values: the caller's bearer token, the Azure OpenAI key (key mode: held
in the Key Vault emulator, read by the relay with its managed identity) and
the prompt. The session covers success, streaming, content filter, rate limit,
upstream 5xx, malformed upstream, mid-stream failure, timeout, a rejected key
after rotation, policy rejections and unauthenticated calls. None of the three
values may appear in the relay's or the emulators' log output, in any error
body, or in any SSE error event.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from tests.reliability.common import RELAY_TIMEOUT_S
from tests.support.probe import run_probed_stack
from tests.support.stack import Stack, key_mode
from tests.support.tokens import JWT_SHAPED

KNOWN_KEY = "kv-aoai-key-hygiene-7f3a9c1e5b"
KNOWN_PROMPT = "the vault combination is orchid-4471-tangerine"


@pytest.fixture(scope="module")
def key_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**key_mode(KNOWN_KEY), "RELAY_UPSTREAM_TIMEOUT_S": str(RELAY_TIMEOUT_S)}
    with run_probed_stack(tmp_path_factory.mktemp("hygiene"), env) as stack:
        yield stack


def test_no_token_key_or_prompt_in_logs_or_error_bodies(key_stack: Stack) -> None:
    stack = key_stack
    token = stack.token(name="Hygiene Tester")
    bodies: list[str] = []

    def post(prompt: str, stream: bool = False, auth: str | None = token, **extra: object) -> int:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], "stream": stream, **extra}
        headers = {"Authorization": f"Bearer {auth}"} if auth is not None else {}
        with httpx2.Client(timeout=20) as http, http.stream("POST", f"{stack.api}/v1/chat/completions", json=body, headers=headers) as resp:
            raw = b""
            try:
                for piece in resp.iter_raw():
                    raw += piece
            except httpx2.HTTPError:
                pass
            text = raw.decode("utf-8", "replace")
            if resp.status_code != 200:
                bodies.append(text)
            elif stream:
                bodies.extend(block for block in text.split("\n\n") if block.startswith("event: error"))
            return resp.status_code

    assert post(KNOWN_PROMPT) == 200
    assert post(KNOWN_PROMPT, stream=True, stream_options={"include_usage": True}) == 200
    assert post(f"[emulate:content_filter] {KNOWN_PROMPT}") == 400
    assert post(f"[emulate:jailbreak] {KNOWN_PROMPT}", stream=True) == 400
    assert post(f"[emulate:rate_limit=30] {KNOWN_PROMPT}") == 429
    assert post(f"[emulate:status=500] {KNOWN_PROMPT}") == 502
    assert post(f"[emulate:status=400] {KNOWN_PROMPT}") == 400
    assert post(f"[emulate:bad_json] {KNOWN_PROMPT}") == 502
    assert post(f"[emulate:bad_json] {KNOWN_PROMPT}", stream=True) == 200
    assert post(f"[emulate:midstream_fail] {KNOWN_PROMPT}", stream=True) == 200
    assert post(f"[emulate:slow=5] {KNOWN_PROMPT}") == 504
    assert post(f"[emulate:bogus_directive] {KNOWN_PROMPT}") == 400
    assert post(KNOWN_PROMPT, temperature="hot") == 400
    assert post(KNOWN_PROMPT, user_security_context={"end_user_id": KNOWN_PROMPT}) == 400
    assert post(KNOWN_PROMPT, auth=None) == 401
    assert post(KNOWN_PROMPT, auth=token + "tampered") == 401
    # Azure OpenAI stops accepting the key (rotated in the service, not yet in Key Vault): re-read once, then 502.
    stack.emulator("POST", "/_emulator/config", {"api_key": "rotated-elsewhere-key"})
    try:
        assert post(KNOWN_PROMPT) == 502
    finally:
        stack.emulator("POST", "/_emulator/config", {"api_key": KNOWN_KEY})
    assert post(KNOWN_PROMPT) == 200

    log = "\n".join(stack.log_lines())
    assert '"event":"relay.request"' in log, "the session was not logged at all"
    assert len(bodies) >= 14
    for label, secret in (("bearer token", token), ("Azure OpenAI key", KNOWN_KEY), ("prompt", KNOWN_PROMPT)):
        for fragment in (secret, secret[-16:]):
            assert fragment not in log, f"the {label} appears in the log"
            leaking = [body for body in bodies if fragment in body]
            assert not leaking, f"the {label} appears in an error body: {leaking[0][:300]}"
    assert "Traceback" not in log
    assert not any("Traceback" in body or "127.0.0.1" in body for body in bodies)
    # Tokens the test never sees (the relay's own managed-identity tokens) are JWTs too: none may appear anywhere.
    assert not JWT_SHAPED.search(log), "a JWT appears in the log"
    assert not any(JWT_SHAPED.search(body) for body in bodies), "a JWT appears in an error body"
