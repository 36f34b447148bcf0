"""The benchmark suite runs end to end: ``benchmarks/bench_suite.py --smoke``.

This checks the harness (servers start and stop, answers are checked, every scenario is
measured, the report has every target row), never the speed: a smoke run's windows are far
too short for the numbers to mean anything. Where the peers are not installed (no
``benchmarks/.work/peers``, as on CI) the suite uses the Python load generator and reports the
Triton rows as not measured; it never installs anything.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PEERS = ROOT / "benchmarks" / ".work" / "peers"

# The start of each target row, in the report's order.
TARGET_ROWS = [
    "MLP c=8, no batching, HTTP: Naiad / Triton python backend",
    "MLP c=8, no batching, gRPC: Naiad / Triton python backend",
    "MLP c=8, no batching, HTTP: Naiad / raw ORT batch 1",
    "MLP c=8, no batching, gRPC: Naiad / raw ORT batch 1",
    "MLP c=32, dynamic batching, HTTP: Naiad / raw ORT batch 1",
    "MLP c=32, dynamic batching, gRPC: Naiad / raw ORT batch 1",
    "MLP c=32, HTTP: Naiad p99 with dynamic batching / without",
    "MLP c=32, gRPC: Naiad p99 with dynamic batching / without",
    "identity python c=8, HTTP: Naiad / Triton",
    "identity python c=8, gRPC: Naiad / Triton",
    "identity python c=1, HTTP: p99 Naiad <= Triton",
    "identity python c=1, gRPC: p99 Naiad <= Triton",
    "start to ready <= 1 s",
    "idle RSS <= 150 MB",
    "16 MiB FP32 gRPC round trip <= 2x grpcio echo",
]
TRITON_ROWS = [row for row in TARGET_ROWS if "Triton" in row]


def _target_rows(report: str) -> list[list[str]]:
    """The cells of each row of the table under ``## Targets``."""
    section = report.split("\n## Targets\n", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert table[0] == "| target | measured | result | why (this run's numbers) |"
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table[1:]]


def _suite_results() -> list[tuple[str, int]]:
    """The suite's committed results (other scripts' results may change meanwhile)."""
    return sorted((p.name, p.stat().st_mtime_ns) for p in RESULTS.glob("suite*"))


@pytest.mark.timeout(240)
def test_suite_smoke_run(tmp_path: Path) -> None:
    results_before = _suite_results()
    peers_before = PEERS.exists()
    output = tmp_path / "suite.md"

    completed = subprocess.run(
        [sys.executable, "benchmarks/bench_suite.py", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-5000:]
    rows = _target_rows(output.read_text())
    assert len(rows) == len(TARGET_ROWS), [name for name, _, _ in rows]
    for (name, *_), prefix in zip(rows, TARGET_ROWS, strict=True):
        assert name.startswith(prefix), (name, prefix)
    for name, measured, result, why in rows:
        assert result in ("met", "**missed**", "not measured"), (name, result)
        assert measured, name
        # A missed throughput target says why in the run's own CPU numbers.
        if result == "**missed**" and "infer/s" in measured:
            assert why.startswith("needs ") and " us " in why, (name, why)
        if result == "met":
            assert why == "-", (name, why)
    # --smoke leaves Triton out (or it is not installed): its rows say so, and why.
    for name, measured, result, _ in rows:
        if any(name.startswith(prefix) for prefix in TRITON_ROWS):
            assert result == "not measured" and measured.startswith("not measured: "), name
        else:
            assert result != "not measured", name
    if importlib.util.find_spec("matplotlib") is not None:
        for plot in ("suite_throughput.png", "suite_p99.png", "suite_transfer.png"):
            assert (tmp_path / plot).stat().st_size > 0, plot
    # A smoke run writes into --output only, and installs nothing.
    assert _suite_results() == results_before
    assert PEERS.exists() == peers_before
