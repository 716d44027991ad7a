"""``python -m bench.seal_cost``: what sealing the Responses API's ids costs, per stream event and on the first byte.

Feeds the same events through chat's forwarder (``shared.sse.SseForwarder``, no ids touched)
and the Responses forwarder (``shared.responses_stream.ResponsesForwarder``: each event
checked, its ids sealed with HMAC-SHA256), one event per ``feed`` as they arrive from the
service, and prints microseconds per event for each and their difference. The first byte
costs one ``response.created`` event, which carries the response object (one id to seal),
and the request's own ids unsealed: both are timed too.
"""

from __future__ import annotations

import json
import timeit

from shared.responses_ids import IdSeal, Owner
from shared.responses_stream import ResponsesForwarder
from shared.responses_usage import ContextSizes
from shared.sse import SseForwarder

OWNER = Owner("1b2c3d4e-0000-4000-8000-000000000003", "72f988bf-0000-4000-8000-000000000002")
SEAL = IdSeal(b"k" * 32)
RESPONSE_ID = "resp_" + "a" * 48
ITEM_ID = "msg_" + "b" * 48
REPEAT = 20_000


def _event(kind: str, payload: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload}, separators=(',', ':'))}\n\n".encode()


DELTA = _event("response.output_text.delta", {"item_id": ITEM_ID, "output_index": 0, "content_index": 0, "delta": " word", "logprobs": []})
CREATED = _event(
    "response.created",
    {"response": {"id": RESPONSE_ID, "object": "response", "status": "in_progress", "model": "gpt-4o-mini", "output": [], "usage": None}},
)
CHAT_CHUNK = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" word"}}]}\n\n'


def per_call_us(call: object, number: int = REPEAT) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    chat = SseForwarder()
    responses = ResponsesForwarder(SEAL.for_owner(OWNER), ContextSizes())
    chat_us = per_call_us(lambda: chat.feed(CHAT_CHUNK))
    delta_us = per_call_us(lambda: responses.feed(DELTA))
    created_us = per_call_us(lambda: ResponsesForwarder(SEAL.for_owner(OWNER), ContextSizes()).feed(CREATED), REPEAT // 4)
    sealed = SEAL.seal(OWNER, RESPONSE_ID)
    unseal_us = per_call_us(lambda: SEAL.for_owner(OWNER).unseal(sealed))
    print(f"chat chunk, chat forwarder:             {chat_us:6.2f} us/event")
    print(f"Responses delta, ids sealed:            {delta_us:6.2f} us/event (+{delta_us - chat_us:.2f})")
    print(f"first event (response.created), sealed: {created_us:6.2f} us (a new request's forwarder, one HMAC)")
    print(f"one id unsealed (a request's id):       {unseal_us:6.2f} us")


if __name__ == "__main__":
    main()
