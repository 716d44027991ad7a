"""What the emulator answers a valid request with: tool calls, a JSON document, or text.

Tool calls when :func:`devhost.emulator.tools.functions_to_call` picks any (never with
``output_filter``, which always filters content); otherwise content: the deterministic
instance of a ``json_schema`` format's schema, ``{"answer": <the text answer>}`` for
``json_object``, or the text answer (:func:`devhost.emulator.generation.plan_answer`).
``max_tokens``/``max_completion_tokens`` cut any of them with ``finish_reason: length``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devhost.emulator.directives import DirectiveError, Directives
from devhost.emulator.generation import (
    Answer,
    content_answer,
    json_pieces,
    plan_answer,
    prompt_tokens,
    tool_call_answer,
)
from devhost.emulator.structured import ResponseFormat, parse_response_format
from devhost.emulator.tools import ToolRequest, check_conversation, functions_to_call, make_call, parse_tools


@dataclass(frozen=True)
class Features:
    tools: ToolRequest | None
    response_format: ResponseFormat


def parse_features(body: Mapping[str, Any]) -> Features:
    """The request's tools and response format, its tool turns checked; raises InvalidRequest as Azure does."""
    tools = parse_tools(body)
    check_conversation(body["messages"])
    return Features(tools, parse_response_format(body))


def plan_reply(deployment: str, body: Mapping[str, Any], features: Features, directives: Directives) -> Answer:
    messages = body["messages"]
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    prompt = prompt_tokens(messages)
    if directives.tool_call is not None and features.tools is None:
        raise DirectiveError("emulator directive 'tool_call' needs 'tools' in the request")
    if features.tools is not None and not directives.output_filter:
        functions = functions_to_call(features.tools, messages, directives.tool_call)
        if functions:
            return tool_call_answer([make_call(function) for function in functions], cap, prompt)
    form = features.response_format
    if form.kind == "text":
        return plan_answer(deployment, messages, directives.words, cap)
    if form.kind == "json_schema":
        return content_answer(json_pieces(form.instance), cap, prompt)
    text = plan_answer(deployment, messages, directives.words, None).text
    return content_answer(json_pieces({"answer": text}), cap, prompt)
