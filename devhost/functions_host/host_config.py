"""The host's settings from host.json, with the app-setting overrides the Functions host applies.

An app setting ``AzureFunctionsJobHost__<path>`` overrides the host.json value at ``<path>`` (``__`` separates
levels), e.g. ``AzureFunctionsJobHost__functionTimeout`` ("Override host.json values",
https://learn.microsoft.com/azure/azure-functions/functions-host-json#override-hostjson-values).

``functionTimeout`` is a .NET ``TimeSpan`` (``hh:mm:ss``, ``d.hh:mm:ss``, or a whole number of days). On Flex
Consumption it defaults to 30 minutes, has no maximum, and ``-1`` means unbounded (Microsoft's table,
https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout; azure-functions-host
``src/WebJobs.Script/Config/ScriptJobHostOptionsSetup.cs``: ``DefaultFunctionTimeout``, ``MinFunctionTimeout`` of
one second, ``-1`` translated to an infinite timeout).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_FUNCTION_TIMEOUT_S = 30 * 60.0
MIN_FUNCTION_TIMEOUT_S = 1.0
OVERRIDE_PREFIX = "AzureFunctionsJobHost__"
_TIMESPAN = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


def read_host_json(app_dir: Path) -> dict[str, Any]:
    """host.json as an object; empty when there is none."""
    try:
        config = json.loads((app_dir / "host.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return config if isinstance(config, dict) else {}


def parse_timespan(text: str) -> float:
    """Seconds in a .NET ``TimeSpan`` string: ``[-][d.]hh:mm[:ss[.fffffff]]`` or a whole number of days."""
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text) * 86400.0
    match = _TIMESPAN.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a TimeSpan (hh:mm:ss)")
    sign, days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise ValueError(f"'{text}' is not a TimeSpan (hh:mm:ss)")
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0) + float(f"0.{fraction or 0}")
    return -total if sign else total


def format_timespan(seconds: float) -> str:
    """A duration as .NET's ``TimeSpan.ToString()`` writes it: ``[d.]hh:mm:ss[.fffffff]``."""
    ticks = round(seconds * 10_000_000)
    whole, fraction = divmod(ticks, 10_000_000)
    days, rest = divmod(whole, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return (f"{days}." if days else "") + text + (f".{fraction:07d}" if fraction else "")


def function_timeout(app_dir: Path, env: Mapping[str, str]) -> float | None:
    """The seconds an invocation may run before the host times it out; None for unbounded (``-1``)."""
    value = env.get(f"{OVERRIDE_PREFIX}functionTimeout")
    if value is None:
        value = read_host_json(app_dir).get("functionTimeout")
    if value is None:
        return DEFAULT_FUNCTION_TIMEOUT_S
    seconds = parse_timespan(str(value))
    if seconds == -86400.0:
        return None
    if seconds < MIN_FUNCTION_TIMEOUT_S:
        raise ValueError(f"FunctionTimeout must be greater than 00:00:01 (host.json functionTimeout is '{value}').")
    return seconds
