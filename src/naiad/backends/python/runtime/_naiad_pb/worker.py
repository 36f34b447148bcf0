"""The worker process: one model instance (or one auto-complete call) behind one socket.

Life of an instance worker: read ``init``, import the model, call ``initialize(args)``,
answer ``init_done``; then serve ``execute`` / ``is_ready`` frames on an asyncio loop
until ``finalize`` (call ``finalize()``, answer, exit 0). If the server goes away (end
of stream, or the parent process changes), the worker exits at once without
``finalize``, as Triton's stub does.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import bls, context, pb_metrics
from .channel import Channel
from .errors import TritonModelException
from .execution import Executor
from .messages import (
    AUTO_COMPLETE,
    CANCEL,
    EXECUTE,
    FINALIZE,
    INIT,
    IS_READY,
    AutoCompleteDoneMsg,
    AutoCompleteMsg,
    FinalizeDoneMsg,
    InitDoneMsg,
    InitMsg,
    IsReadyDoneMsg,
    LogMsg,
    MetricsMsg,
)
from .model_loader import load_model_class
from .pb_config import ModelConfig
from .wire import ChannelClosed, Frame

_ERROR = 40
# Changes to custom metrics within this long go to the server in one snapshot.
METRICS_COALESCE_S = 0.05


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _loads(data: bytes | bytearray | memoryview) -> Any:
    return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def _codec() -> tuple[Callable[[Any], bytes], Callable[[Any], Any]]:
    """orjson when the worker's Python has it (same JSON, several times faster)."""
    try:
        import orjson
    except ImportError:
        return _dumps, _loads
    return orjson.dumps, orjson.loads


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when the worker's Python has it (lower latency per message)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def describe(exc: BaseException) -> str:
    """``TypeName: message``, the way Triton reports a Python exception."""
    return "".join(traceback.format_exception_only(exc)).strip()


def _watch_parent() -> None:
    """Exit when the server dies, even while a long ``execute`` keeps the loop busy."""
    parent = os.getppid()
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _send_metrics(channel: Channel) -> None:
    """Send a snapshot of the custom metrics after each burst of changes (a thread).

    A thread waiting on an event costs nothing while nothing changes (a loop task would
    have to poll); the frame itself still goes out through the loop, like every other.
    """
    while True:
        pb_metrics.changed.wait()
        time.sleep(METRICS_COALESCE_S)
        pb_metrics.changed.clear()
        try:
            channel.send(MetricsMsg(pb_metrics.snapshot()).to_header())
        except (OSError, RuntimeError):  # the server is gone, or our loop closed
            return


def main(argv: list[str]) -> int:
    # Signals sent to the whole process group (Ctrl-C, a supervisor stopping the
    # server) must not kill the model under the server: the server finalizes it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if len(argv) != 2 or argv[0] != "--fd":
        print("usage: naiad_worker.py --fd N", file=sys.stderr)
        return 2
    channel = Channel(socket.socket(fileno=int(argv[1])), *_codec())
    threading.Thread(target=_watch_parent, name="naiad-parent-watch", daemon=True).start()

    def sink(level: int, message: str, file: str, line: int) -> None:
        with contextlib.suppress(OSError):  # the server is gone; nothing to log to
            channel.send(LogMsg(level, message, os.path.basename(file), line).to_header())

    context.log_sink = sink
    try:
        first = channel.recv_blocking()
    except ChannelClosed:
        return 0
    kind = first.header.get("k")
    if kind == AUTO_COMPLETE:
        return _auto_complete(channel, AutoCompleteMsg.from_header(first.header))
    if kind == INIT:
        return InstanceWorker(channel, InitMsg.from_header(first.header)).run()
    print(f"naiad worker: unexpected first message {kind!r}", file=sys.stderr)
    return 2


def _auto_complete(channel: Channel, message: AutoCompleteMsg) -> int:
    context.model_dir = message.model_dir
    context.log_verbose = message.log_verbose
    reply = AutoCompleteDoneMsg()
    try:
        model_class = load_model_class(message)
        hook = getattr(model_class, "auto_complete_config", None)
        if hook is not None:
            config = hook(ModelConfig(message.model_config))
            if not isinstance(config, ModelConfig):
                raise TritonModelException(
                    f"auto_complete_config function in model '{message.model_name}' must "
                    "return a valid pb.ModelConfig object."
                )
            reply.model_config = json.dumps(config.as_dict())
    except Exception as exc:
        reply.error = describe(exc)
    try:
        channel.send(reply.to_header())
    except OSError:
        return 1
    return 0


class InstanceWorker:
    def __init__(self, channel: Channel, init: InitMsg) -> None:
        self._channel = channel
        self._init = init
        self._loop = _new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._model: Any = None
        self._executor: Executor | None = None
        self._bls: bls.BlsClient | None = None
        self._finished: asyncio.Future[int] = self._loop.create_future()

    def run(self) -> int:
        init = self._init
        context.model_dir = init.model_dir
        context.log_verbose = init.log_verbose
        done = InitDoneMsg(pid=os.getpid())
        try:
            self._initialize(done)
        except Exception as exc:
            done.error = describe(exc)
            trace = "".join(traceback.format_exception(exc)).rstrip()
            context.log_sink(_ERROR, f"initialize failed: {trace}", "worker.py", 0)
        try:
            self._channel.send(done.to_header())
        except OSError:  # the server gave up on us meanwhile
            return 1
        if done.error is not None:
            return 1
        self._executor = Executor(
            self._model,
            self._channel,
            init.instance_name,
            init.args.get("model_name", ""),
            init.shared_memory,
            init.shm_threshold_bytes,
            init.decoupled,
        )
        self._channel.attach(self._loop, self._on_frame, self._on_close)
        bls.client = self._bls = bls.BlsClient(
            self._channel, self._loop, init.shared_memory, init.shm_threshold_bytes
        )
        threading.Thread(
            target=_send_metrics, args=(self._channel,), name="naiad-metrics", daemon=True
        ).start()
        code = self._loop.run_until_complete(self._finished)
        if not self._channel.closed:
            self._channel.detach()  # flushes what is still queued
        return code

    def _initialize(self, done: InitDoneMsg) -> None:
        model_class = load_model_class(self._init)
        self._model = model_class()
        initialize = getattr(self._model, "initialize", None)
        if initialize is not None:
            self._run(initialize(dict(self._init.args)))
        done.is_async = inspect.iscoroutinefunction(getattr(model_class, "execute", None))
        done.has_is_ready = callable(getattr(self._model, "is_ready", None))
        if done.has_is_ready:
            done.ready = bool(self._run(self._model.is_ready()))

    def _run(self, result: Any) -> Any:
        """A hook's result, awaited on the worker's loop when the hook is ``async def``."""
        if inspect.isawaitable(result):
            return self._loop.run_until_complete(result)
        return result

    def _on_frame(self, frame: Frame) -> None:
        kind = frame.header.get("k")
        if kind == EXECUTE:
            assert self._executor is not None
            self._executor.handle(frame)
        elif kind == CANCEL:
            assert self._executor is not None
            self._executor.cancel(frame.header)
        elif self._bls is not None and self._bls.on_frame(frame):
            pass
        elif kind == IS_READY:
            self._loop.create_task(self._is_ready())
        elif kind == FINALIZE:
            self._loop.create_task(self._finalize())

    async def _is_ready(self) -> None:
        reply = IsReadyDoneMsg()
        try:
            result = self._model.is_ready()
            reply.ready = bool(await result if inspect.isawaitable(result) else result)
        except Exception as exc:
            reply.ready = False
            reply.error = describe(exc)
        self._channel.send(reply.to_header())

    async def _finalize(self) -> None:
        reply = FinalizeDoneMsg()
        finalize = getattr(self._model, "finalize", None)
        try:
            if finalize is not None:
                result = finalize()
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            reply.error = describe(exc)
        self._channel.send(reply.to_header())
        if not self._finished.done():
            self._finished.set_result(0)

    def _on_close(self, error: BaseException) -> None:
        # The server closed the channel without finalize: it is gone or gave up on us.
        if not self._finished.done():
            self._finished.set_result(1)
