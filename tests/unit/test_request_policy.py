"""shared.request_policy: whatever the body, a body fit to send upstream or a 400 naming the problem.

What ``prepare_chat_body`` returns holds only allowed parameters, an allowed
model, capped tokens, and never ``user_security_context``.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import RelayError
from shared.request_policy import ALLOWED_PARAMETERS, parse_body, prepare_chat_body
from tests.support.strategies import BODY_SETTINGS as SETTINGS
from tests.support.strategies import bodies, body_json

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(raw=st.binary(max_size=200) | body_json.map(lambda v: json.dumps(v).encode()))
def test_parse_body_returns_an_object_or_a_400(raw: bytes) -> None:
    try:
        body = parse_body(raw)
    except RelayError as error:
        assert (error.status, error.code) == (400, "invalid_request")
    else:
        assert isinstance(body, dict)


@FAST
@given(body=bodies)
def test_prepared_body_holds_only_what_the_policy_allows(body: dict[str, Any]) -> None:
    try:
        prepared = prepare_chat_body(body, SETTINGS)
    except RelayError as error:
        assert error.status == 400
        assert error.code in {"invalid_request", "parameter_not_allowed", "model_not_allowed"}
        assert "Traceback" not in error.message
        return
    assert set(prepared) <= ALLOWED_PARAMETERS
    assert "user_security_context" not in prepared and "data_sources" not in prepared and "user" not in prepared
    assert prepared["model"] in SETTINGS.deployments
    for name in ("max_tokens", "max_completion_tokens"):
        if name in prepared:
            assert 1 <= prepared[name] <= SETTINGS.max_tokens
    assert prepared.get("n", 1) <= SETTINGS.max_n
    assert isinstance(prepared["messages"], list) and prepared["messages"]
