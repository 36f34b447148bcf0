"""The dashboard in a real browser: headless Chromium loads ``GET /`` while a load runs.

The page's script polls ``/dashboard/data``; the test reads the DOM Chromium rendered (the
model table, and the values the latency chart plotted, which the page mirrors in
``data-*`` attributes) and saves a screenshot next to the test's temporary files.
Chromium is Debian's ``chromium`` package (``scripts/test.sh`` installs it in CI).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from naiad.examples import onnx_models
from tests.repository import simple_config, write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

BROWSER = next(
    (
        shutil.which(name)
        for name in ("chromium", "chromium-browser", "google-chrome")
        if shutil.which(name)
    ),
    None,
)
SPIN = """
name: "spin"
backend: "onnxruntime"
max_batch_size: 1
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("dashboard")
    write_model(root, "simple", simple_config("simple", "INT32"), onnx_models.add_sub("INT32"))
    write_model(root, "spin", SPIN, onnx_models.spin())
    with ServerProcess([root]) as process:
        yield process


class Load:
    """Requests to ``spin`` that take longer and longer, timed by the client."""

    def __init__(self, server: ServerProcess) -> None:
        self._url = server.grpc_url
        self._stop = threading.Event()
        self.sent = 0
        self.latencies_ms: list[float] = []  # as the client saw them
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = grpcclient.InferenceServerClient(self._url)
        while not self._stop.is_set() and self.sent < 2000:  # bounded whatever happens
            tensor = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
            rounds = min(5 + 3 * self.sent, 600)
            tensor.set_data_from_numpy(np.full((1, 1), rounds, dtype=np.float32))
            started = time.monotonic()
            client.infer("spin", [tensor])
            self.latencies_ms.append((time.monotonic() - started) * 1000)
            self.sent += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _chromium(url: str, *args: str) -> str:
    assert BROWSER is not None
    result = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",  # tests run as root in CI containers
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,1150",
            # Virtual time: the page's one-second polls run without real waiting, and
            # the fetches they make pause the clock until the server answers.
            "--virtual-time-budget=8000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(
    BROWSER is None,
    reason="needs headless Chromium: apt-get update && apt-get install -y chromium",
)
def test_dashboard_shows_models_and_a_live_latency_chart(
    server: ServerProcess, tmp_path: Path
) -> None:
    url = f"http://{server.http_url}/"
    with urllib.request.urlopen(url) as response:
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp
        assert "default-src 'none'" in csp
    with Load(server) as load:
        while load.sent < 20:  # traffic in the window before the page loads
            threading.Event().wait(0.05)
        dom = _chromium(url, "--dump-dom")
        screenshot = tmp_path / "dashboard.png"
        _chromium(url, f"--screenshot={screenshot}")
    print(f"\ndashboard screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10_000
    assert re.search(r'<tr data-model="simple/1"', dom)
    assert re.search(r'<tr data-model="spin/1" class="selected"', dom)  # the busiest model
    assert "READY" in dom
    chart = re.search(
        r'<canvas id="latency-chart"[^>]*data-points="(\d+)" data-values="([^"]*)"', dom
    )
    assert chart, dom[-3000:]
    points = int(chart.group(1))
    values = [float(v) for v in chart.group(2).split(",")]
    assert points >= 3, chart.group(0)
    # The page's polls run in virtual time, so they can all fall within a fraction of a
    # real second, where the p50 over the last 10 s need not move: check that the chart
    # plots the load's real latencies, and that it was redrawn from several polls.
    low, high = min(load.latencies_ms), max(load.latencies_ms)
    assert all(0.5 * low <= v <= 1.5 * high for v in values), (values, low, high)
    updates = re.search(r'data-updates="(\d+)"', dom)
    assert updates and int(updates.group(1)) >= 3
