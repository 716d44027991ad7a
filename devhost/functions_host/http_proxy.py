"""HTTP-triggered invocations through a worker that serves HTTP itself (HTTP streams), as the Functions host does them.

For each caller request that selects a function (routes.py) the host, in this order
(azure-functions-host, ``src/WebJobs.Script.Grpc/Channel/GrpcWorkerChannel.cs`` ``SendInvocationRequest``):

1. starts forwarding the caller's request to the worker's ``HttpUri`` with YARP's ``IHttpForwarder`` and its
   default transforms, after ``x-ms-invocation-id: <invocation id>`` was added unless the request already
   carries one (``Server/DefaultHttpProxyService.cs``, ``TryAdd``);
2. sends the ``InvocationRequest``: the trigger parameter bound to an ``RpcHttp`` that is empty except for the
   route parameters, because the worker advertised ``HttpUri`` and ``RequiresRouteParameters``
   (``MessageExtensions/GrpcMessageConversionExtensions.cs`` ``ToRpcHttp``), and the trigger metadata without the
   request objects, because it advertised ``RpcHttpTriggerMetadataRemoved``
   (``Extensions/ScriptInvocationContextExtensions.cs``): ``Query`` and ``Headers`` as JSON, each query parameter
   but ``code`` and each route parameter (Azure/azure-webjobs-sdk-extensions,
   ``src/WebJobs.Extensions.Http/HttpTriggerAttributeBindingProvider.cs`` ``GetRequestBindingData``);
3. the caller gets the worker's HTTP response as it streams; on the ``InvocationResponse`` the host checks that
   forwarding succeeded.

YARP's default transforms (dotnet/yarp ``src/ReverseProxy/Forwarder/HttpTransformer.cs`` ``Default``,
``Transforms/ForwardedTransformExtensions.cs``): hop-by-hop headers are dropped, ``Host`` becomes the worker's,
and ``X-Forwarded-For`` / ``-Proto`` / ``-Host`` are *set* (not appended) to the peer the host saw, the
request's scheme and its ``Host``; ``X-Forwarded-Prefix`` is removed (the host has no path base). A forwarding
failure before the response started is 502 (YARP's answer to a request error). When the caller goes away
the forwarded request is aborted, so the worker's server sees the disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from multidict import CIMultiDict
from starlette.types import Receive, Scope, Send
from yarl import URL

from devhost.appservice import peer_address
from devhost.functions_host.protos import rpc
from devhost.functions_host.routes import HttpFunction, select
from devhost.functions_host.worker_channel import FunctionsHost, failure_text, succeeded

INVOCATION_HEADER = "x-ms-invocation-id"
EXECUTING_REASON = "This function was programmatically called via the host APIs."
# RequestUtilities.ShouldSkipRequestHeader / ShouldSkipResponseHeader in YARP; Host is replaced by forwarded_headers.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "proxy-authenticate",
    "proxy-authentication-info", "proxy-authorization", "proxy-features", "proxy-instruction", "security-scheme",
    "alpn", "close", "te", "alt-svc", "http2-settings",
})  # fmt: skip
# Not copied from the worker's response: hop-by-hop, and the two the local host's own server writes on every response.
_NOT_COPIED = _HOP_BY_HOP | {"date", "server"}
_FORWARDED = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-prefix")


def forwarded_headers(scope: Scope) -> CIMultiDict[str]:
    """The request headers the worker receives: YARP's default transforms over what the host received."""
    headers: CIMultiDict[str] = CIMultiDict()
    original_host = ""
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "host":
            original_host = value
            continue
        if name in _HOP_BY_HOP or name in _FORWARDED:
            continue
        headers.add(name, value)
    peer, _ = peer_address(scope)
    headers["x-forwarded-for"] = peer
    headers["x-forwarded-proto"] = scope.get("scheme", "http")
    if original_host:
        headers["x-forwarded-host"] = original_host
    return headers


def trigger_metadata(scope: Scope, route_params: Mapping[str, str]) -> dict[str, Any]:
    """The binding data of an HTTP trigger, without the request objects."""
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    metadata: dict[str, Any] = {name: rpc.TypedData(string=value) for name, value in query.items() if name.lower() != "code"}
    metadata.update({name: rpc.TypedData(string=value) for name, value in route_params.items()})
    metadata["Query"] = rpc.TypedData(json=json.dumps(query))
    metadata["Headers"] = rpc.TypedData(json=json.dumps(headers))
    return metadata


def invocation_request(function: HttpFunction, invocation_id: str, scope: Scope, route_params: Mapping[str, str]) -> Any:
    trace_parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"
    return rpc.InvocationRequest(
        invocation_id=invocation_id,
        function_id=function.function_id,
        input_data=[rpc.ParameterBinding(name=function.trigger_parameter, data=rpc.TypedData(http=rpc.RpcHttp(params=route_params)))],
        trigger_metadata=trigger_metadata(scope, route_params),
        trace_context=rpc.RpcTraceContext(trace_parent=trace_parent),
    )


async def _empty_response(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


class CallerGone(Exception):
    pass


class RequestBody:
    """The caller's body, handed to the forwarded request as it arrives; then watches for the caller leaving."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.complete = asyncio.Event()
        self.caller_gone = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.caller_gone = True
                raise CallerGone
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                self.complete.set()
                return

    async def caller_left(self) -> None:
        await self.complete.wait()
        while (await self._receive())["type"] != "http.disconnect":
            pass


class FunctionsHttp:
    """The ASGI app the host's HTTP routes run on: select the function, forward, invoke."""

    def __init__(self, host: FunctionsHost, log: logging.Logger) -> None:
        self.host = host
        self.log = log
        self._session: aiohttp.ClientSession | None = None
        self._completions: set[asyncio.Task[None]] = set()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # As YARP's SocketsHttpHandler: no redirects, cookies or decompression; no client headers of its own.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def aclose(self) -> None:
        for task in list(self._completions):
            task.cancel()
        if self._session is not None:
            await self._session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        await self.host.running()
        selected = select(self.host.functions, scope["method"], scope["path"])
        if selected is None or self.host.worker.http_uri is None:
            await _empty_response(send, 404)
            return
        function, route_params = selected
        invocation_id = str(uuid.uuid4())
        started = time.perf_counter()
        self.log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, EXECUTING_REASON, invocation_id)
        if function.name in self.host.worker.load_errors:
            self._executed(function, invocation_id, started, f"Failed: {self.host.worker.load_errors[function.name]}")
            await _empty_response(send, 500)
            return
        headers = forwarded_headers(scope)
        headers.setdefault(INVOCATION_HEADER, invocation_id)
        body = RequestBody(receive)
        forwarding = asyncio.ensure_future(self._forward(scope, headers, body, send))
        outcome = self.host.invoke(invocation_request(function, invocation_id, scope, route_params), function.name)
        caller_left = asyncio.ensure_future(body.caller_left())
        try:
            await asyncio.wait({forwarding, caller_left}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            caller_left.cancel()
            if not forwarding.done():
                # The caller hung up: abort the forwarded request, so that the worker's server sees it too.
                forwarding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwarding
        error = "RequestCanceled" if forwarding.cancelled() else forwarding.result()
        self._spawn(self._complete(function, invocation_id, started, outcome, error))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._completions.add(task)
        task.add_done_callback(self._completions.discard)

    async def _forward(self, scope: Scope, headers: CIMultiDict[str], body: RequestBody, send: Send) -> str | None:
        """Stream the request to the worker and its response to the caller; the YARP ``ForwarderError`` name if it failed.

        Names from dotnet/yarp ``src/ReverseProxy/Forwarder/ForwarderError.cs``: ``Request`` (sending the request
        or reading the response head), ``RequestCanceled`` (the caller went away), ``ResponseBodySource`` (reading
        the worker's body), ``ResponseBodyDestination`` (writing to the caller).
        """
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url = URL(f"{self.host.worker.http_uri}{path.decode('latin-1')}" + (f"?{query.decode('latin-1')}" if query else ""), encoded=True)
        data: Any = body.chunks() if scope["method"] not in ("GET", "HEAD") or "content-length" in headers else None
        if data is None:
            body.complete.set()
        try:
            response = await self.session().request(scope["method"], url, headers=headers, data=data, allow_redirects=False)
        except (CallerGone, aiohttp.ClientError) as exc:
            if body.caller_gone:
                return "RequestCanceled"
            self.log.warning("Failed to proxy request to the worker: %s", exc)
            await _empty_response(send, 502)
            return "Request"
        try:
            return await self._copy_response(response, send)
        finally:
            response.close()

    async def _copy_response(self, response: aiohttp.ClientResponse, send: Send) -> str | None:
        try:
            await send({"type": "http.response.start", "status": response.status, "headers": self._response_headers(response)})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except aiohttp.ClientError:
            return "ResponseBodySource"
        except OSError:
            return "ResponseBodyDestination"
        return None

    @staticmethod
    def _response_headers(response: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
        return [
            (name.lower(), value)
            for name, value in response.raw_headers
            if name.decode("latin-1").lower() not in _NOT_COPIED
        ]

    async def _complete(
        self, function: HttpFunction, invocation_id: str, started: float, outcome: asyncio.Future[Any], forwarding_error: str | None
    ) -> None:
        """Log the invocation's end as the host does: the worker's result, failed if forwarding failed."""
        response = (await outcome).invocation_response
        self.host.finished(invocation_id)
        if not succeeded(response.result):
            self._executed(function, invocation_id, started, f"Failed: {failure_text(response.result)}")
        elif forwarding_error is not None:
            self._executed(function, invocation_id, started, f"Failed: Failed to proxy request with ForwarderError: {forwarding_error}")
        else:
            self._executed(function, invocation_id, started, "Succeeded")

    def _executed(self, function: HttpFunction, invocation_id: str, started: float, outcome: str) -> None:
        duration = (time.perf_counter() - started) * 1000
        level = logging.INFO if outcome == "Succeeded" else logging.ERROR
        self.log.log(level, "Executed 'Functions.%s' (%s, Id=%s, Duration=%.0fms)", function.name, outcome, invocation_id, duration)
