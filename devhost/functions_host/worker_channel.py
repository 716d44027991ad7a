"""The host side of FunctionRpc: a gRPC server, the Python worker process it launches, and the start-up sequence.

What the Azure Functions host does, as read from its sources (azure-functions-host, ``src/``):

- launches the worker with ``--host --port --workerId --requestId --grpcMaxMessageLength`` and the same as
  ``--functions-uri --functions-worker-id --functions-request-id --functions-grpc-max-message-length``
  (``WebJobs.Script/Workers/Rpc/RpcWorkerContext.cs``; the length is ``int.MaxValue``, ``RpcWorkerConstants.cs``),
  in the app's directory, with ``FUNCTIONS_WORKER_DIRECTORY``, ``FUNCTIONS_APPLICATION_DIRECTORY`` and
  ``FUNCTIONS_WORKER_RUNTIME_VERSION`` added (``Workers/Rpc/RpcWorkerProcess.cs``) and
  ``PYTHON_THREADPOOL_THREAD_COUNT=1000`` unless set (``Workers/ProcessManagement/DefaultWorkerProcessFactory.cs``);
- on ``StartStream`` sends ``WorkerInitRequest`` (host version, worker and app directories, capability
  ``MultiStream=10``), reads the worker's capabilities from ``WorkerInitResponse`` (``HttpUri`` turns on
  HTTP proxying), then ``FunctionsMetadataRequest`` (worker indexing) and one ``FunctionLoadRequest`` per function
  (``WebJobs.Script.Grpc/Channel/GrpcWorkerChannel.cs``);
- when the worker fails to initialise it logs "Initializing worker process failed", drops the channel and
  runs with the functions it found, none (``Host/WorkerFunctionMetadataProvider.cs``), so every route is 404;
- sends ``WorkerTerminate`` (grace period 5 s) at shutdown only to a worker that advertised
  ``HandlesWorkerTerminateMessage``, then stops the process (``GrpcWorkerChannel.StopWorkerProcess``);
- times out an invocation still running after ``functionTimeout`` (host_config.py): logs "Timeout value of
  {timeout} exceeded by function 'Functions.{name}' (Id: '{id}'). Initiating cancellation." and fails it
  (Azure/azure-webjobs-sdk ``src/Microsoft.Azure.WebJobs.Host/Executors/FunctionExecutor.cs``
  ``OnFunctionTimeout``, ``TryHandleTimeoutAsync``), then logs "A function timeout has occurred. Restarting worker
  process executing invocationId '{id}'." and restarts the worker that runs it, which ends every invocation on it;
  invocations that arrive meanwhile wait for the new worker (``WebJobs.Script.WebHost/WebScriptHostExceptionHandler.cs``
  ``OnTimeoutExceptionAsync``; ``Workers/Rpc/FunctionRegistration/RpcFunctionInvocationDispatcher.cs``
  ``RestartWorkerWithInvocationIdAsync``, ``DisposeAndRestartWorkerChannel``: "Delaying future invocations").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from devhost.functions_host.host_config import format_timespan
from devhost.functions_host.protos import rpc, rpc_grpc
from devhost.functions_host.routes import HttpFunction, http_function, route_prefix

# The worker shell (shell.py) lives here, as the platform's lives in its worker directory.
WORKER_DIR = Path(__file__).resolve().parent
HOST_VERSION = "4.1000.0.0"
MAX_MESSAGE_LENGTH = 2_147_483_647
STARTUP_TIMEOUT_S = 60.0
TERMINATE_GRACE_S = 5.0
RPC_LOG_KEPT = 2000
CONSOLE_READ_BYTES = 65536
_LEVEL_NAMES = {
    int(rpc.RpcLog.Trace): "Trace",
    int(rpc.RpcLog.Debug): "Debug",
    int(rpc.RpcLog.Information): "Information",
    int(rpc.RpcLog.Warning): "Warning",
    int(rpc.RpcLog.Error): "Error",
    int(rpc.RpcLog.Critical): "Critical",
}
_PYTHON_LEVELS = {"Trace": logging.DEBUG, "Debug": logging.DEBUG, "Information": logging.INFO, "Warning": logging.WARNING}


class WorkerStartError(RuntimeError):
    pass


@dataclass
class LoggedRpc:
    """One ``RpcLog`` the worker sent."""

    level: str
    category: str
    log_category: str
    message: str
    invocation_id: str


@dataclass
class WorkerState:
    worker_id: str
    pid: int | None = None
    capabilities: dict[str, str] = field(default_factory=dict)
    init_error: str | None = None
    load_errors: dict[str, str] = field(default_factory=dict)

    @property
    def http_uri(self) -> str | None:
        return self.capabilities.get("HttpUri")


def failure_text(status: Any) -> str:
    """A ``StatusResult``'s exception as the host logs it: message, then the worker's stack trace."""
    exception = status.exception
    return "\n".join(part for part in (exception.message, exception.stack_trace) if part) or "(no exception reported)"


def succeeded(status: Any) -> bool:
    return bool(status.status == rpc.StatusResult.Success)


def failed_invocation(invocation_id: str, message: str) -> Any:
    """An ``InvocationResponse`` the host records for an invocation the worker never answered."""
    result = rpc.StatusResult(status=rpc.StatusResult.Failure, exception=rpc.RpcException(message=message))
    return rpc.StreamingMessage(invocation_response=rpc.InvocationResponse(invocation_id=invocation_id, result=result))


def worker_command(port: int, worker_id: str, request_id: str) -> list[str]:
    return [
        sys.executable, "-m", "devhost.functions_host.shell",
        "--host", "127.0.0.1", "--port", str(port), "--workerId", worker_id, "--requestId", request_id,
        "--grpcMaxMessageLength", str(MAX_MESSAGE_LENGTH),
        "--functions-uri", f"http://127.0.0.1:{port}/", "--functions-worker-id", worker_id,
        "--functions-request-id", request_id, "--functions-grpc-max-message-length", str(MAX_MESSAGE_LENGTH),
    ]  # fmt: skip


def worker_environment(env: Mapping[str, str], app_dir: Path) -> dict[str, str]:
    worker_env = {**env}
    worker_env.setdefault("FUNCTIONS_WORKER_RUNTIME", "python")
    worker_env["FUNCTIONS_WORKER_DIRECTORY"] = str(WORKER_DIR)
    worker_env["FUNCTIONS_APPLICATION_DIRECTORY"] = str(app_dir)
    worker_env["FUNCTIONS_WORKER_RUNTIME_VERSION"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    worker_env.setdefault("PYTHON_THREADPOOL_THREAD_COUNT", "1000")
    worker_env["PYTHONUNBUFFERED"] = "1"
    return worker_env


class FunctionsHost:
    """One worker, one stream: start it, index and load its functions, invoke them, stop it."""

    def __init__(self, app_dir: Path, env: Mapping[str, str], log: logging.Logger, function_timeout: float | None = None) -> None:
        self.app_dir = app_dir
        self.env = env
        self.log = log
        self.function_timeout = function_timeout
        self.worker = WorkerState(worker_id=str(uuid.uuid4()))
        self.functions: list[HttpFunction] = []
        self.rpc_logs: deque[LoggedRpc] = deque(maxlen=RPC_LOG_KEPT)
        self._request_id = str(uuid.uuid4())
        self._server: grpc.aio.Server | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._outbound: asyncio.Queue[Any] = asyncio.Queue()
        self._started = asyncio.Event()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        # Invocations from their request until finished() (their response forwarded and their result in), with timers.
        self._executing: dict[str, tuple[asyncio.Future[Any], asyncio.TimerHandle | None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._port = 0
        self._generation = 0  # how many times the worker was restarted
        # Cleared while the worker restarts: new invocations wait for the new one.
        self._running = asyncio.Event()
        self._restarting = asyncio.Lock()

    # Start-up ----------------------------------------------------------------

    async def start(self) -> None:
        """Launch the worker and load its functions; a worker that fails to start leaves the host with none."""
        self._server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_LENGTH), ("grpc.max_send_message_length", MAX_MESSAGE_LENGTH)]
        )
        rpc_grpc.add_FunctionRpcServicer_to_server(_EventStream(self), self._server)
        self._port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        await self._launch()
        self._running.set()

    async def _launch(self) -> None:
        try:
            await asyncio.wait_for(self._start_worker(self._port), STARTUP_TIMEOUT_S)
        except (WorkerStartError, TimeoutError) as exc:
            self.worker.init_error = str(exc) or f"the worker did not initialise within {STARTUP_TIMEOUT_S:.0f} s"
            self.log.error("Initializing worker process failed: %s", self.worker.init_error)
            self.log.warning("Removing errored webhost language worker channel for runtime: python workerId:%s", self.worker.worker_id)
            await self._stop_worker()
        self.log.info("%d functions found (Worker)", len(self.functions))
        if self.functions and self.worker.http_uri is None:
            # The classic mode, where the request and response travel inside RpcHttp messages, is not emulated.
            self.log.error("The worker did not advertise HttpUri: this local host serves HTTP-stream workers only, every route is 404")
        if not self.functions:
            self.log.warning("No job functions found.")

    async def _start_worker(self, port: int) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *worker_command(port, self.worker.worker_id, self._request_id),
            cwd=self.app_dir,
            env=worker_environment(self.env, self.app_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self.worker.pid = self._process.pid
        self._spawn(self._relay_console(self._process))
        self.log.info("Worker process started (pid %d); waiting for StartStream", self._process.pid)
        started = asyncio.ensure_future(self._started.wait())
        exited = asyncio.ensure_future(self._process.wait())
        await asyncio.wait({started, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            raise WorkerStartError(f"the worker process exited with status {self._process.returncode} before it connected")
        exited.cancel()

        init = await self._request("worker_init_request", rpc.WorkerInitRequest(
            host_version=HOST_VERSION,
            worker_directory=str(WORKER_DIR),
            function_app_directory=str(self.app_dir),
            capabilities={"MultiStream": "10"},
        ))  # fmt: skip
        response = init.worker_init_response
        self.worker.capabilities = dict(response.capabilities)
        if not succeeded(response.result):
            raise WorkerStartError(failure_text(response.result))
        self.log.info("Worker initialized: HttpUri=%s, capabilities: %s", self.worker.http_uri, sorted(self.worker.capabilities))

        metadata = await self._request(
            "functions_metadata_request", rpc.FunctionsMetadataRequest(function_app_directory=str(self.app_dir))
        )
        indexed = metadata.function_metadata_response
        if not succeeded(indexed.result):
            self.log.error("Worker failed to index functions: %s", failure_text(indexed.result))
        prefix = route_prefix(self.app_dir)
        for function in indexed.function_metadata_results:
            await self._load(function, prefix)

    async def _load(self, metadata: Any, prefix: str) -> None:
        request = rpc.FunctionLoadRequest(
            function_id=metadata.function_id,
            metadata=rpc.RpcFunctionMetadata(
                name=metadata.name,
                directory=metadata.directory,
                script_file=metadata.script_file,
                entry_point=metadata.entry_point,
                bindings=metadata.bindings,
            ),
        )
        loaded = (await self._request("function_load_request", request, key=metadata.function_id)).function_load_response
        if not succeeded(loaded.result):
            self.worker.load_errors[metadata.name] = failure_text(loaded.result)
            self.log.error(
                "Worker failed to load function: '%s' with functionId: '%s'. %s",
                metadata.name, metadata.function_id, self.worker.load_errors[metadata.name],
            )  # fmt: skip
        function = http_function(metadata.name, metadata.function_id, metadata.raw_bindings, prefix)
        if function is None:
            self.log.warning("Function '%s' is not HTTP-triggered; this host only serves HTTP functions", metadata.name)
            return
        self.functions.append(function)
        self.log.info("Functions.%s: [%s] http://127.0.0.1/%s", function.name, ",".join(sorted(function.methods)) or "*", function.template)

    # Invocations -------------------------------------------------------------

    async def running(self) -> None:
        """Return once a worker runs (at once, unless it is restarting)."""
        await self._running.wait()

    def invoke(self, request: Any, function_name: str) -> asyncio.Future[Any]:
        """Send an ``InvocationRequest``; the future resolves to the worker's ``InvocationResponse``, or to a failure
        when the invocation times out or its worker is restarted. It runs until :meth:`finished`, as the host's
        invocation lasts until its HTTP response was forwarded (``GrpcWorkerChannel.InvokeResponse``)."""
        invocation_id = request.invocation_id
        future = self._expect(invocation_id)
        timer = None
        if self.function_timeout is not None:
            timer = asyncio.get_running_loop().call_later(
                self.function_timeout, self._timed_out, invocation_id, function_name, self._generation
            )
        self._executing[invocation_id] = (future, timer)
        self._send(invocation_request=request)
        return future

    def finished(self, invocation_id: str) -> None:
        """The invocation's response was forwarded and its result is in."""
        _, timer = self._executing.pop(invocation_id, (None, None))
        if timer is not None:
            timer.cancel()

    def _fail(self, invocation_id: str, message: str) -> None:
        future, timer = self._executing.pop(invocation_id)
        if timer is not None:
            timer.cancel()
        self._pending.pop(invocation_id, None)
        if not future.done():
            future.set_result(failed_invocation(invocation_id, message))

    def _timed_out(self, invocation_id: str, function_name: str, generation: int) -> None:
        if invocation_id not in self._executing:
            return
        assert self.function_timeout is not None
        timeout = format_timespan(self.function_timeout)
        self.log.error(
            "Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.",
            timeout, function_name, invocation_id,
        )  # fmt: skip
        self._fail(invocation_id, f"Timeout value of {timeout} was exceeded by function: Functions.{function_name}")
        self._spawn(self._restart_after_timeout(invocation_id, generation))

    async def _restart_after_timeout(self, invocation_id: str, generation: int) -> None:
        async with self._restarting:
            if generation != self._generation:
                return  # a restart since then ended the worker that ran it
            self.log.warning("A function timeout has occurred. Restarting worker process executing invocationId '%s'.", invocation_id)
            self._running.clear()
            try:
                await self._restart_worker()
            finally:
                self._running.set()
            self.log.warning("Restart of language worker process(es) completed.")

    async def _restart_worker(self) -> None:
        """Stop the worker, fail what it was running, and start a new one with the host's start-up sequence."""
        for invocation_id in list(self._executing):
            self._fail(invocation_id, "The worker process running this invocation was restarted.")
        self._generation += 1
        self._outbound.put_nowait(None)  # ends the old worker's stream
        # Disposing a channel kills its process (WorkerProcess.Dispose, Process.Kill): no graceful shutdown.
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        self.worker = WorkerState(worker_id=str(uuid.uuid4()))
        self.functions = []
        self._outbound = asyncio.Queue()
        self._started = asyncio.Event()
        await self._launch()

    # Shutdown ----------------------------------------------------------------

    async def stop(self) -> None:
        if self.worker.capabilities.get("HandlesWorkerTerminateMessage"):
            self._send(worker_terminate=rpc.WorkerTerminate(grace_period={"seconds": int(TERMINATE_GRACE_S)}))
            if self._process is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._process.wait(), TERMINATE_GRACE_S)
        await self._stop_worker()
        self._outbound.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace=1.0)
        for task in list(self._background):
            task.cancel()

    async def _stop_worker(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), TERMINATE_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    # The stream --------------------------------------------------------------

    def _send(self, **content: Any) -> None:
        self._outbound.put_nowait(rpc.StreamingMessage(request_id=self._request_id, **content))

    def _expect(self, key: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        return future

    async def _request(self, kind: str, payload: Any, key: str | None = None) -> Any:
        future = self._expect(key or kind)
        self._send(**{kind: payload})
        return await future

    def _resolve(self, key: str, message: Any) -> None:
        future = self._pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result(message)

    def received(self, message: Any) -> None:
        content = message.WhichOneof("content")
        if content == "start_stream":
            if message.start_stream.worker_id == self.worker.worker_id:
                self._started.set()
        elif content == "worker_init_response":
            self._resolve("worker_init_request", message)
        elif content == "function_metadata_response":
            self._resolve("functions_metadata_request", message)
        elif content == "function_load_response":
            self._resolve(message.function_load_response.function_id, message)
        elif content == "invocation_response":
            self._resolve(message.invocation_response.invocation_id, message)
        elif content == "rpc_log":
            self._record(message.rpc_log)

    def _record(self, log: Any) -> None:
        entry = LoggedRpc(
            level=_LEVEL_NAMES.get(int(log.level), "None"),
            category=log.category,
            log_category=rpc.RpcLog.RpcLogCategory.Name(log.log_category),
            message=log.message,
            invocation_id=log.invocation_id,
        )
        self.rpc_logs.append(entry)
        level = _PYTHON_LEVELS.get(entry.level, logging.ERROR)
        if entry.log_category == "User":
            # The app's own log lines, as they would reach Application Insights: the message alone.
            self.log.log(level, "%s", entry.message)
        else:
            self.log.log(level, "[worker %s] %s: %s", entry.level, entry.category, entry.message)

    async def outbound(self) -> AsyncIterator[Any]:
        """The messages for the worker that runs now (a restart ends this stream and queues for the next one)."""
        queue = self._outbound
        while (message := await queue.get()) is not None:
            yield message

    async def _relay_console(self, process: asyncio.subprocess.Process) -> None:
        """The worker's stdout and stderr, line by line, into the host's log (read in blocks: no line is too long)."""
        assert process.stdout is not None
        pending = b""
        while chunk := await process.stdout.read(CONSOLE_READ_BYTES):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > CONSOLE_READ_BYTES:
                lines, pending = [*lines, pending], b""
            for line in lines:
                self.log.info("[worker console] %s", line.decode("utf-8", "replace").rstrip())
        if pending:
            self.log.info("[worker console] %s", pending.decode("utf-8", "replace").rstrip())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def status(self) -> dict[str, Any]:
        """What the host knows about its worker, for the local host's status page and the tests."""
        return {
            "worker": {
                "pid": self.worker.pid,
                "http_uri": self.worker.http_uri,
                "capabilities": self.worker.capabilities,
                "init_error": self.worker.init_error,
                "restarts": self._generation,
            },
            "executing_invocations": len(self._executing),
            "functions": [
                {"name": f.name, "route": f.template, "methods": sorted(f.methods), "load_error": self.worker.load_errors.get(f.name)}
                for f in self.functions
            ],
            "rpc_log": [dataclasses.asdict(entry) for entry in self.rpc_logs],
        }


class _EventStream(rpc_grpc.FunctionRpcServicer):  # type: ignore[misc]
    """``FunctionRpc.EventStream``: the worker's messages go to the host, the host's queue goes to the worker."""

    def __init__(self, host: FunctionsHost) -> None:
        self.host = host

    async def EventStream(self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> None:
        async def read() -> None:
            async for message in request_iterator:
                self.host.received(message)

        reader = asyncio.ensure_future(read())
        try:
            async for message in self.host.outbound():
                await context.write(message)
        finally:
            reader.cancel()
