"""Start a real ``naiad serve`` process for a benchmark, on loopback with ephemeral ports.

``LocalServer`` is what every benchmarked server process shares (Naiad here, Triton in
``bench_python.py``): its addresses, the readiness probe, SIGTERM-then-kill, and the context
manager.

A trimmed copy of ``tests/server_process.py`` (benchmarks do not import the test package): the
ports come from the server's own ``Started HTTPService at 127.0.0.1:PORT`` log lines, so the
harness never guesses at free ports. The log is kept, and can be written to a file, because a
slow or failing benchmark is usually explained there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

_STARTED = re.compile(r"Started (HTTPService|GRPCInferenceService) at (?:\[[^\]]+\]|[^:]+):(\d+)")


def stat_cpu_seconds(stat_path: Path) -> float:
    """User + system CPU time in a ``/proc`` ``stat`` file (a process's or one thread's)."""
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    # After the ")" that ends the command name, utime and stime are fields 12 and 13.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LocalServer:
    """A server child process listening on loopback; subclasses start it."""

    http_port: int | None
    grpc_port: int | None
    process: subprocess.Popen[str] | subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout_s: float = 60.0) -> LocalServer:
        raise NotImplementedError

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def _terminate(self) -> None:
        """SIGTERM (both servers drain, then exit 0), SIGKILL after 30 s."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self._terminate()
        return self.process.returncode

    def __enter__(self) -> Self:
        self.start()  # with each server's own default timeout
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class NaiadProcess(LocalServer):
    """``naiad serve`` in a child process; use as a context manager.

    ``repository`` None serves the bundled example repository; ``env`` is added to this
    process's environment; ``poll_interval_s`` is how often readiness is probed.
    """

    def __init__(
        self,
        repository: Path | None,
        *extra_args: str,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        poll_interval_s: float = 0.05,
    ) -> None:
        self.args = [
            sys.executable, "-m", "naiad", "serve",
            *([f"--model-repository={repository}"] if repository is not None else []),
            "--http-port=0", "--grpc-port=0", "--allow-metrics=false",
            *extra_args,
        ]  # fmt: skip
        self.log_path = log_path
        self.env = env or {}
        self.poll_interval_s = poll_interval_s
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.ready_s: float | None = None
        self._reader: threading.Thread | None = None

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def start(self, timeout_s: float = 60.0) -> NaiadProcess:
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", **self.env),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                raise RuntimeError(f"naiad exited with {self.process.returncode}:\n{self.log}")
            if self.http_port and self.grpc_port and self._ready():
                self.ready_s = time.monotonic() - started
                return self
            time.sleep(self.poll_interval_s)
        self.stop()
        raise TimeoutError(f"naiad was not ready within {timeout_s} s:\n{self.log}")

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            match = _STARTED.search(line)
            if match:
                if match.group(1) == "HTTPService":
                    self.http_port = int(match.group(2))
                else:
                    self.grpc_port = int(match.group(2))

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (Linux ``/proc``)."""
        return stat_cpu_seconds(Path(f"/proc/{self.pid}/stat"))

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self._terminate()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.write_text(self.log + "\n")
        return self.process.returncode
