"""Start a python-backend worker process and talk to it while it is not on the event loop.

The worker is started with an argument list, never a shell, and gets only the number
of the socket it inherits: model names, paths and the config travel over that socket.
Start-up (``init`` / ``auto_complete``) and shutdown (``finalize``) are blocking
exchanges run on loader threads; in between, ``PythonInstance`` drives the channel on
the server's event loop.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from naiad.backends.python.runtime._naiad_pb.channel import Channel
from naiad.backends.python.runtime._naiad_pb.messages import (
    FINALIZE_DONE,
    LOG,
    FinalizeMsg,
    LogMsg,
)
from naiad.backends.python.runtime._naiad_pb.wire import ChannelClosed, Frame
from naiad.errors import ModelLoadError

WORKER_SCRIPT = Path(__file__).parent / "runtime" / "naiad_worker.py"
# How long finalize() may take at unload before the worker is killed.
FINALIZE_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 5.0

logger = logging.getLogger("naiad.python")
# Messages from models (pb_utils.Logger) are logged under this name.
model_logger = logging.getLogger("naiad.python.model")


@dataclass(frozen=True, slots=True)
class Interpreter:
    """The Python that runs a model's workers, and the environment it runs in."""

    python: str
    # Variables to set on top of the server's environment.
    env_overrides: dict[str, str] = field(default_factory=dict)
    description: str = "the server's Python"


def forward_log(header: dict[str, Any], pid: int) -> None:
    """Log a model's message with its own file and line, as Triton's log shows them."""
    message = LogMsg.from_header(header)
    if not model_logger.isEnabledFor(message.level):
        return
    record = model_logger.makeRecord(
        model_logger.name, message.level, message.file, message.line, message.message, (), None
    )
    record.process = pid
    model_logger.handle(record)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"


class WorkerProcess:
    """A started worker: its process and the server's end of its channel."""

    def __init__(self, process: subprocess.Popen[bytes], channel: Channel, label: str) -> None:
        self.process = process
        self.channel = channel
        self.label = label
        # Set once the server has dealt with this worker's death.
        self.gone = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def spawn(cls, interpreter: Interpreter, label: str) -> WorkerProcess:
        import os

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = None
        if interpreter.env_overrides:
            env = dict(os.environ)
            env.update(interpreter.env_overrides)
        try:
            process = subprocess.Popen(
                [interpreter.python, str(WORKER_SCRIPT), "--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            ours.close()
            raise ModelLoadError(
                f"{label}: cannot start a python backend worker with "
                f"{interpreter.python} ({interpreter.description}): {exc}"
            ) from None
        finally:
            theirs.close()
        channel = Channel(ours, orjson.dumps, orjson.loads)
        return cls(process, channel, label)

    def exchange(self, header: dict[str, Any], reply_kind: str) -> Frame:
        """Send one message and wait (blocking) for its reply, logging what comes between."""
        self.channel.send(header)
        while True:
            try:
                frame = self.channel.recv_blocking()
            except (ChannelClosed, OSError):
                raise ModelLoadError(
                    f"{self.label}: the python backend worker (pid {self.pid}) "
                    f"{describe_exit(self.wait(EXIT_TIMEOUT_S))} before answering"
                ) from None
            kind = frame.header.get("k")
            if kind == LOG:
                forward_log(frame.header, self.pid)
            elif kind == reply_kind:
                return frame

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def finalize(self, timeout_s: float = FINALIZE_TIMEOUT_S) -> None:
        """Ask the worker to run ``finalize()`` and exit; kill it if it does not (blocking)."""
        try:
            self.channel.send(FinalizeMsg().to_header())
            while True:
                frame = self.channel.recv_blocking(timeout_s)
                if frame.header.get("k") == LOG:
                    forward_log(frame.header, self.pid)
                elif frame.header.get("k") == FINALIZE_DONE:
                    if frame.header.get("error"):
                        logger.warning("%s: finalize failed: %s", self.label, frame.header["error"])
                    break
        except (ChannelClosed, TimeoutError, OSError) as exc:
            logger.warning("%s: no clean finalize (%s)", self.label, exc)
        finally:
            self.stop()

    def stop(self) -> None:
        """Close the channel and make sure the process is gone (kill after a grace period)."""
        self.channel.close()
        if self.wait(EXIT_TIMEOUT_S) is None:
            self.process.kill()
            self.process.wait()
