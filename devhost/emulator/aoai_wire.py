"""Azure OpenAI's JSON shapes: completions, stream chunks, content filter results and errors.

Sources: "Azure OpenAI in Azure AI Foundry Models REST API reference" and "Content
filtering" (learn.microsoft.com/azure/ai-services/openai/reference,
.../concepts/content-filter); a captured Azure stream (dto-btn/ssc-assistant,
.../mergeOpenAiDelta/testHelpers/simple_chat.ts): first event ``id ""``, ``object ""``,
``created 0``, ``choices []`` with ``prompt_filter_results``; a role chunk with empty
``content_filter_results``; content chunks with per-category results. Error texts as
the service sends them (seen in Azure-Samples/azure-search-openai-demo#458,
MicrosoftDocs/azure-docs#114602, chatboxai/chatbox#646).

Tool calls as Azure streams them (hyperf/odin's Azure OpenAI client tests, a captured
gpt-4o stream; the same order in openai/openai-python's recorded streams,
.inline-snapshot/external/2018feb66ae1*.bin and f82268f2fefd*.bin): the first chunk carries
``role`` with ``content: null`` and ``tool_calls[{index, id, type: "function", function:
{name, arguments: ""}}]``; then chunks with ``tool_calls[{index, function: {arguments:
<piece>}}]``; each further call opens with its own ``{index, id, type, function}`` chunk;
then a chunk with ``finish_reason: "tool_calls"``. Tool-call chunks carry empty
``content_filter_results`` (the Azure capture above).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from devhost.emulator.generation import Answer

CATEGORIES = ("hate", "self_harm", "sexual", "violence")

PROMPT_FILTERED_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry. To learn more about our content filtering policies please read "
    "our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
BEARER_REJECTED_MESSAGE = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired."
)
KEY_REJECTED_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
DEPLOYMENT_NOT_FOUND_MESSAGE = (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again."
)


def filter_results(filtered: str | None = None, *, jailbreak: bool | None = None) -> dict[str, Any]:
    """Per-category results; ``filtered`` names a category blocked at ``high``; ``jailbreak`` adds Prompt Shields."""
    results: dict[str, Any] = {
        name: {
            "filtered": name == filtered,
            "severity": "high" if name == filtered else "safe",
        }
        for name in CATEGORIES
    }
    if jailbreak is not None:
        results["jailbreak"] = {"filtered": jailbreak, "detected": jailbreak}
    return dict(sorted(results.items()))


def prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": filter_results(jailbreak=False)}]


def completion(completion_id: str, created: int, deployment: str, answer: Answer) -> dict[str, Any]:
    """Non-streamed ``chat.completion``; an output-filtered choice has no content (Azure's usual behaviour)."""
    output_filtered = answer.finish_reason == "content_filter"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if output_filtered or answer.tool_calls else answer.text,
        "refusal": None,
        "annotations": [],
    }
    if answer.tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}} for call in answer.tool_calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": deployment,
        "system_fingerprint": "fp_emulator",
        "prompt_filter_results": prompt_filter_results(),
        "choices": [
            {
                "index": 0,
                "finish_reason": answer.finish_reason,
                "logprobs": None,
                "message": message,
                "content_filter_results": filter_results("violence" if output_filtered else None),
            }
        ],
        "usage": answer.usage(),
    }


def chunk(completion_id: str, created: int, deployment: str, choice: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": deployment,
        "system_fingerprint": "fp_emulator",
        "choices": [] if choice is None else [{"index": 0, "logprobs": None, **choice}],
    }


def stream_deltas(answer: Answer) -> list[dict[str, Any]]:
    """The streamed choices before the finishing one: the role chunk, then content pieces or tool calls."""
    if not answer.tool_calls:
        role = {"delta": {"role": "assistant", "content": "", "refusal": None}, "finish_reason": None, "content_filter_results": {}}
        pieces = [
            {"delta": {"content": piece}, "finish_reason": None, "content_filter_results": filter_results()} for piece in answer.pieces
        ]
        return [role, *pieces]
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(answer.tool_calls):
        opening = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        first = (
            {"role": "assistant", "content": None, "tool_calls": [opening], "refusal": None} if index == 0 else {"tool_calls": [opening]}
        )
        deltas.append(_tool_chunk(first))
        deltas.extend(_tool_chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}) for piece in call.pieces)
    return deltas


def _tool_chunk(delta: dict[str, Any]) -> dict[str, Any]:
    return {"delta": delta, "finish_reason": None, "content_filter_results": {}}


def stream_prologue() -> dict[str, Any]:
    """The first event Azure sends: no choices, only the prompt's filter results."""
    return {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": prompt_filter_results(),
    }


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def openai_error(message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """Validation errors, which Azure reports in OpenAI's shape."""
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


def azure_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def prompt_filtered(jailbreak: bool) -> dict[str, Any]:
    return {
        "error": {
            "message": PROMPT_FILTERED_MESSAGE,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": filter_results(None if jailbreak else "hate", jailbreak=jailbreak),
            },
        }
    }


def rate_limited(api_version: str | None, retry_after_s: int, operation: str = "ChatCompletions_Create") -> dict[str, Any]:
    version = api_version or "v1"
    return azure_error(
        "429",
        f"Requests to the {operation} Operation under Azure OpenAI API version {version} have exceeded "
        f"token rate limit of your current OpenAI S0 pricing tier. Please retry after {retry_after_s} seconds. "
        "Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
    )


def status_error(status: int) -> dict[str, Any]:
    if status >= 500:
        return {
            "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return azure_error(str(status), phrase)
