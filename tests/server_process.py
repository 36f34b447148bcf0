"""Start a real ``naiad serve`` process on loopback with ephemeral ports, for e2e tests.

The ports are read from the server's own start-up log lines (``Started HTTPService at
127.0.0.1:PORT``), so tests never guess at free ports.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

_STARTED = re.compile(
    r"Started (HTTPService|GRPCInferenceService|Metrics Service) at (?:\[[^\]]+\]|[^:]+):(\d+)"
)


class ServerProcess:
    def __init__(
        self,
        repositories: list[Path],
        *extra_args: str,
        env: dict[str, str] | None = None,
        live_headers: dict[str, str] | None = None,
    ) -> None:
        # Variables set for the server on top of this process's environment.
        self.env = dict(env or {})
        # Headers the liveness probe sends (a server may restrict the health API).
        self.live_headers = dict(live_headers or {})
        self.args = [
            sys.executable,
            "-m",
            "naiad",
            "serve",
            *[f"--model-repository={r}" for r in repositories],
            "--http-port=0",
            "--grpc-port=0",
            "--allow-metrics=false",
            *extra_args,
        ]
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None  # with --allow-metrics=true --metrics-port=0
        self._reader: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def start(self, timeout_s: float = 60.0, wait_ready: bool = True) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait_ready:
            self.wait_started(timeout_s)
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            match = _STARTED.search(line)
            if match:
                port = int(match.group(2))
                if match.group(1) == "HTTPService":
                    self.http_port = port
                elif match.group(1) == "Metrics Service":
                    self.metrics_port = port
                else:
                    self.grpc_port = port

    def wait_started(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log}")
            if self.http_port and self.grpc_port and self._live():
                return
            time.sleep(0.05)
        raise TimeoutError(f"server did not start in {timeout_s}s:\n{self.log}")

    def _live(self) -> bool:
        try:
            probe = urllib.request.Request(
                f"http://{self.http_url}/v2/health/live", headers=self.live_headers
            )
            with urllib.request.urlopen(probe, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_exit(self, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout_s)
        self._close_pipe()
        return code

    def _close_pipe(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_pipe()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
