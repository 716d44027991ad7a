"""A small interpreter for the part of the Logic Apps Workflow Definition Language a workflow here uses.

It runs a definition (triggers, actions, parameters) against a fake HTTP layer, so that a test can
assert what the workflow does, not what its JSON looks like. It knows only what it implements: an
action type, an action property, a function or a ``runtimeConfiguration`` setting it does not know
raises :class:`Unsupported`, so the workflow cannot use something no test has run.

Semantics follow the Workflow Definition Language reference
(https://learn.microsoft.com/azure/logic-apps/logic-apps-workflow-definition-language,
https://learn.microsoft.com/azure/logic-apps/workflow-definition-language-functions-reference):

- a string that starts with ``@`` is an expression (its value keeps its type); ``@@`` escapes a
  literal ``@``; ``@{...}`` inside a string is interpolated as text;
- ``x?['p']`` gives null when ``x`` is null or has no ``p``; ``x['p']`` fails instead;
- an action runs when every action in its ``runAfter`` ended with one of the listed statuses
  (none listed: after the trigger); otherwise it is Skipped; an Http action whose response status
  is 400 or more Fails;
- ``and``, ``not`` and an If's expression need booleans; ``equals`` compares strings case-sensitively.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote


class Unsupported(Exception):
    """The definition uses something this interpreter does not implement."""


class ActionFailed(Exception):
    """What makes an action end Failed in Logic Apps (a failed expression, an HTTP error status)."""


@dataclass(frozen=True)
class Request:
    method: str
    uri: str
    headers: dict[str, str]
    body: Any
    authentication: dict[str, Any] | None


@dataclass(frozen=True)
class Response:
    status: int
    body: Any = None


@dataclass
class Record:
    """One trigger or action as the run history keeps it."""

    name: str
    status: str
    inputs: Any = None
    outputs: Any = None
    secured: frozenset[str] = frozenset()


@dataclass
class Run:
    status: str
    history: list[Record] = field(default_factory=list)

    def action(self, name: str) -> Record:
        [record] = [r for r in self.history if r.name == name]
        return record


Http = Callable[[Request], Response]

_ACTION_KEYS = {
    "Compose": {"type", "inputs", "runAfter", "runtimeConfiguration"},
    "Http": {"type", "inputs", "runAfter", "runtimeConfiguration"},
    "Query": {"type", "inputs", "runAfter", "runtimeConfiguration"},
    "If": {"type", "expression", "actions", "else", "runAfter", "runtimeConfiguration"},
    "Foreach": {"type", "foreach", "actions", "runAfter", "runtimeConfiguration"},
}
_HTTP_INPUTS = {"method", "uri", "headers", "body", "authentication"}
_STATUSES = {"Succeeded", "Failed", "Skipped", "TimedOut"}


# ---- expressions -----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>\?\[|\?\.|[()\[\],.]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise Unsupported(f"cannot read the expression at {text[pos:]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Index:
    target: Any
    key: Any
    safe: bool


@dataclass(frozen=True)
class Literal:
    value: Any


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise Unsupported(f"expected {value or 'more'} in {self.text!r}")
        self.pos += 1
        return token

    def parse(self) -> Any:
        node = self.expression()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek()} in {self.text!r}")
        return node

    def expression(self) -> Any:
        kind, value = self.take()
        node: Any
        if kind == "string":
            node = Literal(value[1:-1].replace("''", "'"))
        elif kind == "number":
            node = Literal(float(value) if "." in value else int(value))
        elif kind == "name" and value in ("true", "false", "null"):
            node = Literal({"true": True, "false": False, "null": None}[value])
        elif kind == "name":
            self.take("(")
            args = []
            if self.peek() != ("punct", ")"):
                args.append(self.expression())
                while self.peek() == ("punct", ","):
                    self.take(",")
                    args.append(self.expression())
            self.take(")")
            node = Call(value, tuple(args))
        else:
            raise Unsupported(f"unexpected {value!r} in {self.text!r}")
        while (token := self.peek()) is not None and token[1] in ("[", "?[", ".", "?."):
            self.take()
            safe = token[1].startswith("?")
            if token[1].endswith("["):
                key = self.expression()
                self.take("]")
            else:
                key = Literal(self.take()[1])
            node = Index(node, key, safe)
        return node


def _split_interpolation(text: str) -> list[str | Any]:
    """A string with ``@{...}`` parts: literal text and parsed expressions, in order."""
    parts: list[str | Any] = []
    pos = 0
    while (start := text.find("@{", pos)) != -1:
        parts.append(text[pos:start])
        depth, i, quoted = 1, start + 2, False
        while depth:
            if i >= len(text):
                raise Unsupported(f"unclosed @{{ in {text!r}")
            char = text[i]
            if char == "'":
                quoted = not quoted
            elif not quoted and char == "{":
                depth += 1
            elif not quoted and char == "}":
                depth -= 1
            i += 1
        parts.append(_Parser(text[start + 2 : i - 1]).parse())
        pos = i
    parts.append(text[pos:])
    return [part for part in parts if part != ""]


def _text(value: Any) -> str:
    """A value as ``string()`` and interpolation give it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _format_time(moment: datetime, fmt: str = "o") -> str:
    moment = moment.astimezone(UTC)
    if fmt == "o":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"
    if fmt == "R":
        return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
    raise Unsupported(f"time format {fmt!r}")


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ActionFailed(f"{what} needs a boolean, got {value!r}")
    return value


# ---- the run ---------------------------------------------------------------------------------


class _Scope:
    """What expressions can see: the trigger, finished actions, loop items, the current Query item."""

    def __init__(self, engine: Engine, loops: Mapping[str, Any], item: Any = None, has_item: bool = False) -> None:
        self.engine = engine
        self.loops = dict(loops)
        self.item = item
        self.has_item = has_item

    def with_item(self, item: Any) -> _Scope:
        return _Scope(self.engine, self.loops, item, True)

    def with_loop(self, name: str, item: Any) -> _Scope:
        return _Scope(self.engine, {**self.loops, name: item}, item, True)

    # -- evaluation --

    def value(self, template: Any) -> Any:
        """A definition value (inputs, a condition) with its expressions evaluated."""
        if isinstance(template, dict):
            return {key: self.value(item) for key, item in template.items()}
        if isinstance(template, list):
            return [self.value(item) for item in template]
        if not isinstance(template, str):
            return template
        if template.startswith("@@"):
            return template[1:]
        if template.startswith("@") and not template.startswith("@{"):
            return self.eval(_Parser(template[1:]).parse())
        if "@{" in template:
            return "".join(part if isinstance(part, str) else _text(self.eval(part)) for part in _split_interpolation(template))
        return template

    def eval(self, node: Any) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Index):
            target = self.eval(node.target)
            key = self.eval(node.key)
            if target is None:
                if node.safe:
                    return None
                raise ActionFailed(f"cannot index null with {key!r}")
            if isinstance(target, dict):
                if not isinstance(key, str):
                    raise ActionFailed(f"an object's property name must be a string, got {key!r}")
                if key in target:
                    return target[key]
                if node.safe:
                    return None
                raise ActionFailed(f"property {key!r} does not exist")
            if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
                if 0 <= key < len(target):
                    return target[key]
                if node.safe:
                    return None
                raise ActionFailed(f"index {key} is out of range")
            raise ActionFailed(f"cannot index {type(target).__name__} with {key!r}")
        assert isinstance(node, Call)
        function = _FUNCTIONS.get(node.name)
        if function is None:
            raise Unsupported(f"function {node.name}()")
        return function(self, [self.eval(arg) for arg in node.args])


def _arity(args: list[Any], low: int, high: int | None, name: str) -> None:
    if len(args) < low or (high is not None and len(args) > high):
        raise ActionFailed(f"{name}() takes {low}..{high} arguments, got {len(args)}")


def _f_trigger_body(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 0, 0, "triggerBody")
    return scope.engine.trigger_body


def _f_body(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "body")
    outputs = scope.engine.outputs_of(args[0])
    return outputs.get("body") if isinstance(outputs, dict) and scope.engine.kind_of(args[0]) != "Compose" else outputs


def _f_outputs(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "outputs")
    return scope.engine.outputs_of(args[0])


def _f_parameters(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "parameters")
    return scope.engine.parameter(args[0])


def _f_item(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 0, 0, "item")
    if not scope.has_item:
        raise ActionFailed("item() outside a loop or query")
    return scope.item


def _f_items(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "items")
    if args[0] not in scope.loops:
        raise ActionFailed(f"items({args[0]!r}) outside that loop")
    return scope.loops[args[0]]


def _f_coalesce(scope: _Scope, args: list[Any]) -> Any:
    return next((arg for arg in args if arg is not None), None)


def _f_string(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "string")
    return _text(args[0])


def _f_to_lower(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "toLower")
    if not isinstance(args[0], str):
        raise ActionFailed(f"toLower() needs a string, got {args[0]!r}")
    return args[0].lower()


def _f_equals(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 2, 2, "equals")
    return args[0] == args[1] and type(args[0]) is type(args[1])


def _f_and(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 2, None, "and")
    return all([_bool(arg, "and()") for arg in args])


def _f_not(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "not")
    return not _bool(args[0], "not()")


def _f_empty(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "empty")
    return args[0] is None or (isinstance(args[0], (str, list, dict)) and len(args[0]) == 0)


def _f_contains(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 2, 2, "contains")
    collection, value = args
    if isinstance(collection, str) and isinstance(value, str):
        return value in collection
    if isinstance(collection, list):
        return any(_f_equals(scope, [element, value]) for element in collection)
    if isinstance(collection, dict) and isinstance(value, str):
        return value in collection
    raise ActionFailed(f"contains() cannot search {collection!r} for {value!r}")


def _number(value: Any, name: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ActionFailed(f"{name}() needs numbers, got {value!r}")
    return value


def _f_greater(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 2, 2, "greater")
    return _number(args[0], "greater") > _number(args[1], "greater")


def _f_greater_or_equals(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 2, 2, "greaterOrEquals")
    return _number(args[0], "greaterOrEquals") >= _number(args[1], "greaterOrEquals")


def _f_length(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "length")
    if not isinstance(args[0], (str, list)):
        raise ActionFailed(f"length() needs a string or an array, got {args[0]!r}")
    return len(args[0])


def _f_create_array(scope: _Scope, args: list[Any]) -> Any:
    return list(args)


def _f_concat(scope: _Scope, args: list[Any]) -> Any:
    return "".join(_text(arg) for arg in args)


def _f_encode_uri_component(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 1, 1, "encodeUriComponent")
    return quote(_text(args[0]), safe="-_.!~*'()")


def _f_utc_now(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 0, 1, "utcNow")
    return _format_time(scope.engine.now, *args)


def _f_add_hours(scope: _Scope, args: list[Any]) -> Any:
    _arity(args, 2, 3, "addHours")
    moment = _timestamp(args[0]) + timedelta(hours=_number(args[1], "addHours"))
    return _format_time(moment, *args[2:])


_FUNCTIONS: dict[str, Callable[[_Scope, list[Any]], Any]] = {
    "triggerBody": _f_trigger_body,
    "body": _f_body,
    "outputs": _f_outputs,
    "parameters": _f_parameters,
    "item": _f_item,
    "items": _f_items,
    "coalesce": _f_coalesce,
    "string": _f_string,
    "toLower": _f_to_lower,
    "equals": _f_equals,
    "and": _f_and,
    "not": _f_not,
    "empty": _f_empty,
    "contains": _f_contains,
    "greater": _f_greater,
    "greaterOrEquals": _f_greater_or_equals,
    "length": _f_length,
    "createArray": _f_create_array,
    "concat": _f_concat,
    "encodeUriComponent": _f_encode_uri_component,
    "utcNow": _f_utc_now,
    "addHours": _f_add_hours,
}


class Engine:
    """One run of a definition: ``Engine(definition, parameters, http, now).run(body)``."""

    def __init__(self, definition: Mapping[str, Any], parameters: Mapping[str, Any], http: Http, now: datetime) -> None:
        self.definition = definition
        self.http = http
        self.now = now
        self.trigger_body: Any = None
        self._outputs: dict[str, Any] = {}
        self._kinds: dict[str, str] = {}
        self._history: list[Record] = []
        declared = definition.get("parameters", {})
        unknown = set(parameters) - set(declared)
        if unknown:
            raise Unsupported(f"values for undeclared parameters {sorted(unknown)}")
        self._parameters = {}
        for name, spec in declared.items():
            if name in parameters:
                self._parameters[name] = parameters[name]
            elif "defaultValue" in spec:
                self._parameters[name] = spec["defaultValue"]

    def parameter(self, name: Any) -> Any:
        if name not in self._parameters:
            raise ActionFailed(f"parameter {name!r} has no value")
        return self._parameters[name]

    def outputs_of(self, name: Any) -> Any:
        if name not in self._outputs:
            raise ActionFailed(f"action {name!r} has not run")
        return self._outputs[name]

    def kind_of(self, name: str) -> str:
        return self._kinds[name]

    def run(self, body: Any) -> Run:
        [(name, trigger)] = self.definition["triggers"].items()
        if trigger.get("type") != "Request" or set(trigger) - {"type", "kind", "inputs", "runtimeConfiguration"}:
            raise Unsupported(f"trigger {name}: only a Request trigger is implemented")
        self.trigger_body = body
        self._history.append(Record(name, "Succeeded", None, {"body": body}, _secured(trigger)))
        status = self._run_scope(self.definition["actions"], _Scope(self, {}))
        return Run(status, self._history)

    def _run_scope(self, actions: Mapping[str, Any], scope: _Scope) -> str:
        """Run one scope's actions in runAfter order; Failed if any action failed."""
        for name, action in actions.items():
            kind = action.get("type")
            if kind not in _ACTION_KEYS:
                raise Unsupported(f"action {name}: type {kind!r}")
            extra = set(action) - _ACTION_KEYS[kind]
            if extra:
                raise Unsupported(f"action {name}: {sorted(extra)}")
            for before, statuses in action.get("runAfter", {}).items():
                if before not in actions or not set(statuses) <= _STATUSES:
                    raise Unsupported(f"action {name}: runAfter {before} {statuses}")
        done: dict[str, str] = {}
        while len(done) < len(actions):
            ready = [
                name
                for name, action in actions.items()
                if name not in done and all(before in done for before in action.get("runAfter", {}))
            ]
            if not ready:
                raise Unsupported(f"runAfter cycle among {sorted(set(actions) - set(done))}")
            for name in ready:
                action = actions[name]
                if all(done[before] in statuses for before, statuses in action.get("runAfter", {}).items()):
                    done[name] = self._run_action(name, action, scope)
                else:
                    done[name] = "Skipped"
                    self._history.append(Record(name, "Skipped"))
        return "Failed" if "Failed" in done.values() else "Succeeded"

    def _run_action(self, name: str, action: Mapping[str, Any], scope: _Scope) -> str:
        kind = action["type"]
        self._kinds[name] = kind
        secured = _secured(action)
        record = Record(name, "Succeeded", secured=secured)
        self._history.append(record)
        try:
            if kind == "Compose":
                record.inputs = scope.value(action["inputs"])
                record.outputs = record.inputs
            elif kind == "Query":
                record.inputs = {"from": scope.value(action["inputs"]["from"])}
                if not isinstance(record.inputs["from"], list):
                    raise ActionFailed(f"{name}: 'from' is not an array")
                kept = [
                    item for item in record.inputs["from"] if _bool(scope.with_item(item).value(action["inputs"]["where"]), f"{name} where")
                ]
                record.outputs = {"body": kept}
            elif kind == "Http":
                if set(action["inputs"]) - _HTTP_INPUTS:
                    raise Unsupported(f"action {name}: Http inputs {sorted(set(action['inputs']) - _HTTP_INPUTS)}")
                inputs = scope.value(action["inputs"])
                record.inputs = inputs
                response = self.http(
                    Request(inputs["method"], inputs["uri"], inputs.get("headers", {}), inputs.get("body"), inputs.get("authentication"))
                )
                record.outputs = {"statusCode": response.status, "body": response.body}
                if response.status >= 400:
                    self._outputs[name] = record.outputs
                    raise ActionFailed(f"{name}: HTTP {response.status}")
            elif kind == "If":
                condition = _bool(scope.value(action["expression"]), f"{name} expression")
                record.inputs = {"expressionResult": condition}
                branch = action.get("actions", {}) if condition else action.get("else", {}).get("actions", {})
                if self._run_scope(branch, scope) == "Failed":
                    raise ActionFailed(f"{name}: an action in the branch failed")
            elif kind == "Foreach":
                items = scope.value(action["foreach"])
                if not isinstance(items, list):
                    raise ActionFailed(f"{name}: foreach is not an array")
                failed = [self._run_scope(action["actions"], scope.with_loop(name, item)) for item in items]
                if "Failed" in failed:
                    raise ActionFailed(f"{name}: an iteration failed")
        except ActionFailed as error:
            record.status = "Failed"
            record.outputs = record.outputs if record.outputs is not None else {"error": str(error)}
            return "Failed"
        self._outputs[name] = record.outputs
        return "Succeeded"


def _secured(node: Mapping[str, Any]) -> frozenset[str]:
    config = node.get("runtimeConfiguration", {})
    if set(config) - {"secureData"} or set(config.get("secureData", {})) - {"properties"}:
        raise Unsupported(f"runtimeConfiguration {config}")
    properties = frozenset(config.get("secureData", {}).get("properties", []))
    if properties - {"inputs", "outputs"}:
        raise Unsupported(f"secureData properties {sorted(properties)}")
    return properties


def run(definition: Mapping[str, Any], parameters: Mapping[str, Any], body: Any, http: Http, now: datetime) -> Run:
    """Run ``definition`` once, triggered with ``body``."""
    return Engine(definition, parameters, http, now).run(body)
