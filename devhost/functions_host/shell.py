"""A minimal stand-in for the Python worker's gRPC shell: ``python -m devhost.functions_host.shell <host arguments>``.

From Python 3.13 the platform runs its Python worker as a thin shell it ships itself (not on PyPI) around
the ``azure-functions-runtime`` library, which does the real work: indexing ``function_app.py``,
bindings, the HTTP-stream server and invocations. This shell does what the platform's does
(Azure/azure-functions-python-worker, ``workers/proxy_worker/``: ``start_worker.py``, ``dispatcher.py``):

- reads the host's command line, preferring the ``--functions-*`` forms as the host asks
  (azure-functions-host, ``src/WebJobs.Script/Workers/Rpc/RpcWorkerContext.cs``);
- dials the host's ``FunctionRpc.EventStream`` and sends ``StartStream``;
- hands each request to the library's entry points, with ``properties={"protos", "host"}`` on the
  init request, and sends back the response the library builds;
- forwards log records as ``RpcLog`` (``System`` for the worker's and the library's loggers, ``User`` for
  the app's), with the invocation they belong to.

Nothing else: no placeholder specialisation, no shared memory, no dependency isolation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import logging
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from devhost.functions_host.protos import library_protos, rpc, rpc_grpc

CONNECT_TIMEOUT_S = 5.0
# Loggers whose records are the worker's own (RpcLog category System), as in proxy_worker/logging.py.
SYSTEM_LOGGERS = ("proxy_worker", "azure_functions_runtime", "azure.functions", "devhost.functions_host")
CONSOLE_PREFIX = "LanguageWorkerConsoleLog"

log = logging.getLogger("devhost.functions_host.shell")
_invocation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation_id", default=None)


@dataclass(frozen=True)
class HostAddress:
    host: str
    port: int
    worker_id: str
    request_id: str
    max_message_length: int | None


def parse_args(argv: Sequence[str]) -> HostAddress:
    parser = argparse.ArgumentParser(description="Azure Functions Python worker shell (local stand-in)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workerId", dest="worker_id")
    parser.add_argument("--requestId", dest="request_id")
    parser.add_argument("--grpcMaxMessageLength", type=int, dest="grpc_max_msg_len")
    parser.add_argument("--functions-uri", dest="functions_uri")
    parser.add_argument("--functions-worker-id", dest="functions_worker_id")
    parser.add_argument("--functions-request-id", dest="functions_request_id")
    parser.add_argument("--functions-grpc-max-message-length", type=int, dest="functions_grpc_max_msg_len")
    args = parser.parse_args(list(argv))
    host, port = args.host, args.port
    if args.functions_uri:
        uri = urllib.parse.urlsplit(args.functions_uri)
        host, port = uri.hostname, uri.port
    worker_id = args.functions_worker_id or args.worker_id
    request_id = args.functions_request_id or args.request_id
    if not (host and port and worker_id and request_id):
        parser.error("the host's address (--functions-uri or --host/--port), worker ID and request ID are required")
    return HostAddress(host, port, worker_id, request_id, args.functions_grpc_max_msg_len or args.grpc_max_msg_len)


def rpc_level(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return int(rpc.RpcLog.Critical)
    if levelno >= logging.ERROR:
        return int(rpc.RpcLog.Error)
    if levelno >= logging.WARNING:
        return int(rpc.RpcLog.Warning)
    if levelno >= logging.INFO:
        return int(rpc.RpcLog.Information)
    return int(rpc.RpcLog.Debug)


def rpc_log(record: logging.LogRecord, message: str, invocation_id: str | None) -> Any:
    system = record.name.startswith(SYSTEM_LOGGERS)
    return rpc.RpcLog(
        level=rpc_level(record.levelno),
        message=message,
        category=record.name,
        log_category=rpc.RpcLog.System if system else rpc.RpcLog.User,
        invocation_id=invocation_id or "",
    )


class RpcLogHandler(logging.Handler):
    """Sends every record to the host as an ``RpcLog``; safe from any thread (sync functions run in a pool)."""

    def __init__(self, send: Callable[[Any], None], loop: asyncio.AbstractEventLoop, request_id: str) -> None:
        super().__init__()
        self._send = send
        self._loop = loop
        self._request_id = request_id

    def emit(self, record: logging.LogRecord) -> None:
        message = rpc.StreamingMessage(request_id=self._request_id, rpc_log=rpc_log(record, self.format(record), _invocation_id.get()))
        self._loop.call_soon_threadsafe(self._send, message)


Handler = Callable[[Any], Awaitable[Any]]


class Shell:
    def __init__(self, address: HostAddress, outbound: asyncio.Queue[Any]) -> None:
        self.address = address
        self.outbound = outbound
        self.protos = library_protos()
        self.library: Any = None

    def handlers(self) -> dict[str, Handler]:
        return {
            "worker_init_request": self.worker_init,
            "functions_metadata_request": self.functions_metadata,
            "function_load_request": self.function_load,
            "invocation_request": self.invocation,
        }

    def request(self, name: str, message: Any, **properties: Any) -> Any:
        # The library reads ``request.request.<content>`` and ``request.properties``: the proxy worker's WorkerRequest.
        return argparse.Namespace(name=name, request=message, properties=properties)

    def reply(self, **content: Any) -> Any:
        return rpc.StreamingMessage(request_id=self.address.request_id, **content)

    async def worker_init(self, message: Any) -> Any:
        import azure_functions_runtime

        self.library = azure_functions_runtime
        self.library.start_threadpool_executor()
        response = await self.library.worker_init_request(
            self.request("WorkerInitRequest", message, protos=self.protos, host=self.address.host)
        )
        return self.reply(worker_init_response=response)

    async def functions_metadata(self, message: Any) -> Any:
        response = await self.library.functions_metadata_request(self.request("WorkerMetadataRequest", message))
        return rpc.StreamingMessage(request_id=message.request_id, function_metadata_response=response)

    async def function_load(self, message: Any) -> Any:
        response = await self.library.function_load_request(self.request("FunctionLoadRequest", message))
        return self.reply(function_load_response=response)

    async def invocation(self, message: Any) -> Any:
        _invocation_id.set(message.invocation_request.invocation_id)
        response = await self.library.invocation_request(self.request("FunctionInvocationRequest", message))
        return self.reply(invocation_response=response)

    async def dispatch(self, message: Any) -> None:
        content = message.WhichOneof("content")
        handler = self.handlers().get(content)
        if handler is None:
            log.error("Unknown StreamingMessage content type: %s", content)
            return
        try:
            response = await handler(message)
        except Exception:
            # The library answers its own failures; anything else would otherwise vanish with this task.
            log.exception("unhandled error in the worker shell while handling %s", content)
            return
        self.outbound.put_nowait(response)


async def outgoing(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while True:
        yield await queue.get()


async def run(address: HostAddress) -> None:
    options = []
    if address.max_message_length:
        options = [
            ("grpc.max_receive_message_length", address.max_message_length),
            ("grpc.max_send_message_length", address.max_message_length),
        ]
    async with grpc.aio.insecure_channel(f"{address.host}:{address.port}", options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
        outbound: asyncio.Queue[Any] = asyncio.Queue()
        shell = Shell(address, outbound)
        outbound.put_nowait(shell.reply(start_stream=rpc.StartStream(worker_id=address.worker_id)))
        root = logging.getLogger()
        root.setLevel(logging.DEBUG if os.environ.get("PYTHON_ENABLE_DEBUG_LOGGING", "").lower() in ("1", "true") else logging.INFO)
        root.addHandler(RpcLogHandler(outbound.put_nowait, asyncio.get_running_loop(), address.request_id))
        stream = rpc_grpc.FunctionRpcStub(channel).EventStream(outgoing(outbound))
        tasks: set[asyncio.Task[None]] = set()
        async for message in stream:
            # Each request runs on its own task, so that a streamed response never holds up the next invocation.
            task = asyncio.get_running_loop().create_task(shell.dispatch(message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


def main(argv: Sequence[str] | None = None) -> None:
    address = parse_args(sys.argv[1:] if argv is None else argv)
    print(f"{CONSOLE_PREFIX} INFO: starting worker {address.worker_id} for the host at {address.host}:{address.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(address))


if __name__ == "__main__":
    main()
