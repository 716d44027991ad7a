"""HTTP routes of worker-indexed functions, and matching a request to one, as the Functions host does.

The host builds one route per HTTP-triggered function from its ``httpTrigger`` binding: the template is
``{routePrefix}/{route}`` (``route`` defaults to the function's name, ``routePrefix`` is ``extensions.http.routePrefix``
in host.json, ``api`` by default), constrained to the binding's ``methods`` (any method when absent). A request
that matches no template, or matches one whose methods exclude its method, matches no function: the host answers
404 (azure-functions-host, ``src/WebJobs.Script.WebHost/WebScriptHostHttpRoutesManager.cs``, route constraints).
Templates are matched case-insensitively, as ASP.NET Core routing does. Supported template parts: literal
segments, ``{name}``, ``{name?}`` as the last segment and ``{*name}`` catch-all; anything else is refused at load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.functions_host.host_config import read_host_json

DEFAULT_ROUTE_PREFIX = "api"
_PARAMETER = re.compile(r"^\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(\?)?\}$")


class RouteTemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Segment:
    literal: str | None = None
    parameter: str | None = None
    optional: bool = False
    catch_all: bool = False


@dataclass(frozen=True)
class HttpFunction:
    name: str
    function_id: str
    trigger_parameter: str
    template: str
    methods: frozenset[str]
    segments: tuple[Segment, ...] = field(repr=False)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The route parameters when ``method`` and ``path`` select this function, else None."""
        if self.methods and method.upper() not in self.methods:
            return None
        return match_segments(self.segments, split_path(path))


def split_path(path: str) -> list[str]:
    return [part for part in path.strip("/").split("/") if part]


def parse_template(template: str) -> tuple[Segment, ...]:
    parts = split_path(template)
    segments = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if "{" not in part and "}" not in part:
            segments.append(Segment(literal=part.lower()))
            continue
        found = _PARAMETER.match(part)
        if found is None:
            raise RouteTemplateError(f"unsupported route segment {part!r} in {template!r}")
        catch_all, name, optional = bool(found.group(1)), found.group(2), bool(found.group(3))
        if (catch_all or optional) and not last:
            raise RouteTemplateError(f"{part!r} must be the last segment of {template!r}")
        segments.append(Segment(parameter=name, optional=optional or catch_all, catch_all=catch_all))
    return tuple(segments)


def match_segments(segments: Sequence[Segment], parts: Sequence[str]) -> dict[str, str] | None:
    values: dict[str, str] = {}
    for index, segment in enumerate(segments):
        if segment.catch_all:
            if parts[index:]:
                values[segment.parameter or ""] = "/".join(parts[index:])
            return values
        if index >= len(parts):
            return values if segment.optional and index == len(segments) - 1 else None
        part = parts[index]
        if segment.literal is not None:
            if part.lower() != segment.literal:
                return None
        else:
            values[segment.parameter or ""] = part
    return values if len(parts) == len(segments) else None


def route_prefix(app_dir: Path) -> str:
    """``extensions.http.routePrefix`` from host.json (``api`` when absent)."""
    prefix = read_host_json(app_dir).get("extensions", {}).get("http", {}).get("routePrefix", DEFAULT_ROUTE_PREFIX)
    return str(prefix).strip("/")


def http_function(name: str, function_id: str, raw_bindings: Iterable[str], prefix: str) -> HttpFunction | None:
    """The function's route from its ``raw_bindings`` (the JSON the worker indexed), or None if it is not HTTP-triggered."""
    for raw in raw_bindings:
        binding: Mapping[str, Any] = json.loads(raw)
        if str(binding.get("type", "")).lower() != "httptrigger" or str(binding.get("direction", "")).lower() != "in":
            continue
        route = str(binding.get("route") or name).strip("/")
        template = f"{prefix}/{route}" if prefix else route
        methods = frozenset(str(m).upper() for m in binding.get("methods") or ())
        return HttpFunction(name, function_id, str(binding["name"]), template, methods, parse_template(template))
    return None


def select(functions: Iterable[HttpFunction], method: str, path: str) -> tuple[HttpFunction, dict[str, str]] | None:
    """The function a request goes to: templates with more literal segments win, as in ASP.NET Core routing."""
    ranked = sorted(functions, key=lambda f: (-sum(s.literal is not None for s in f.segments), f.template))
    for function in ranked:
        params = function.match(method, path)
        if params is not None:
            return function, params
    return None
