"""Benchmark: Naiad versus the real Triton 2.51 on an empty python-backend model.

The model is an identity, INT32 ``[16]`` in and out, ``max_batch_size: 8``, one CPU instance, and
one ``model.py`` written in the Triton python-backend style (the worked example of
``/work/shared/peers/README.md``, with INT32 instead of FP32). The same repository directory, so
the very same ``model.py``, is served first by ``naiad serve`` and then by ``tritonserver``
2.51.0 with its python backend (installed from /work/shared/peers into ``benchmarks/.work/peers``).
Only one server runs at a time. Each is driven by perf_analyzer 2.51.0 with batch-1 requests at
each concurrency over HTTP and gRPC. The model does no work, so the numbers are the cost of
serving a python model: protocol, scheduling, and the hop to the process running ``model.py``.
The headline is Naiad's throughput / Triton's at each point. Results go to stdout and to
``benchmarks/results/python_identity.md``.

    python benchmarks/bench_python.py [--duration-s 5] [--concurrency 1 8]
                                      [--protocol http grpc] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench_onnx import (
    DISTURBED_CORES,
    Recorder,
    add_retries_option,
    cpu_text,
    load_average,
    log_problems,
    machine,
    others_cores,
    timed,
)
from loadgen import (
    LOOP,
    PEERS_DIR,
    PEERS_SCRIPTS,
    CpuReader,
    Measurement,
    TritonCall,
    machine_busy_seconds,
    perf_analyzer_version,
    server_point,
    triton_installed,
)
from naiad import __version__ as naiad_version
from naiad_process import LocalServer, NaiadProcess, stat_cpu_seconds

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "results" / "python_identity.md"
WORK_DIR = BENCH_DIR / ".work"
MODEL = "identity"
SERVERS = ("naiad", "triton")

CONFIG = f"""\
name: "{MODEL}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ] }} ]
instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
"""

# Byte for byte the model.py of the peers README's worked example (that one is FP32; the
# dtype lives in config.pbtxt only).
MODEL_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return responses
"""


def write_repository(root: Path) -> Path:
    (root / MODEL / "1").mkdir(parents=True)
    (root / MODEL / "config.pbtxt").write_text(CONFIG)
    (root / MODEL / "1" / "model.py").write_text(MODEL_PY)
    return root


# --- CPU of a process tree -------------------------------------------------------------------


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process's main thread (Linux ``/proc``).

    In Naiad that thread runs the event loop: both frontends and the core service, while
    the model runs in an instance thread or a python worker. Its share of a core is what
    caps a single process's throughput.
    """
    return stat_cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def server_cpu_readers(server: NaiadProcess | TritonProcess) -> dict[str, CpuReader]:
    """The CPU parties of a served point: the server's process tree, Naiad's event loop
    (part of the server's, listed apart), and the whole machine (to flag disturbed points)."""
    readers: dict[str, CpuReader] = {
        "server": lambda: tree_cpu_seconds(server.pid),
        "machine": machine_busy_seconds,
    }
    if isinstance(server, NaiadProcess):
        readers[LOOP] = lambda: main_thread_cpu_seconds(server.pid)
    return readers


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root`` and its live descendants (Linux ``/proc``).

    Both servers run ``model.py`` in child processes (Naiad's python worker, Triton's
    ``triton_python_backend_stub``), so the server's CPU is the whole tree's.
    """
    parents: dict[int, int] = {}
    seconds: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        fields = text.rsplit(")", 1)[1].split()
        # After the ")" that ends the command name: state, ppid, ..., utime (11), stime (12).
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        seconds[pid] = int(fields[11]) + int(fields[12])
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += seconds.get(pid, 0)
        todo += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


# --- the real Triton -------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; tritonserver needs fixed port numbers."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class TritonProcess(LocalServer):
    """``tritonserver`` through the peers' ``triton.sh`` (which ``exec``s it); a context manager."""

    def __init__(self, repository: Path, log_path: Path, peers_dir: Path = PEERS_DIR) -> None:
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.args = [
            "bash", str(PEERS_SCRIPTS / "triton.sh"), str(peers_dir), str(repository),
            str(self.http_port), str(self.grpc_port), str(self.metrics_port),
        ]  # fmt: skip
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None

    @property
    def lines(self) -> list[str]:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace").splitlines()
        return []

    def start(self, timeout_s: float = 120.0) -> TritonProcess:
        started = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_text = "\n".join(self.lines[-40:])
                raise RuntimeError(
                    f"tritonserver exited with {self.process.returncode}:\n{log_text}"
                )
            if self._ready():
                self.ready_s = time.monotonic() - started
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"tritonserver was not ready within {timeout_s} s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)


def server_version(http_url: str) -> str:
    with urllib.request.urlopen(f"http://{http_url}/v2", timeout=5) as response:
        metadata = json.load(response)
    return f"{metadata.get('name', '?')} {metadata.get('version', '?')}"


# --- requests ---------------------------------------------------------------------------------


def check_identity(server: str, protocol: str, url: str, x: np.ndarray) -> None:
    """One inference must return its input unchanged.

    perf_analyzer never looks at outputs. Triton 2.51's stub with numpy 2 in its venv answers
    every request with a 0-byte tensor, and perf_analyzer happily measures that.
    """
    call = TritonCall(protocol, url, MODEL, x)
    try:
        got = call().as_numpy("OUTPUT0")
    except Exception as exc:  # e.g. "cannot reshape array of size 0": the empty-output bug
        raise RuntimeError(f"{server} over {protocol}: the identity check failed: {exc!r}") from exc
    finally:
        call.close()
    if got is None or got.dtype != x.dtype or not np.array_equal(got, x):
        raise RuntimeError(f"{server} over {protocol} returned {got!r} for {x!r}")
    print(f"{server} over {protocol}: identity check OK", flush=True)


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    concurrency: list[int]
    protocols: list[str]
    duration_s: float
    warmup_s: float
    smoke: bool
    retries: int
    # The Python closed loop instead, where perf_analyzer is not installed (bench_suite.py).
    use_perf_analyzer: bool = True
    # Also serve the model with Triton (needs it installed in PEERS_DIR).
    triton: bool = True


@dataclass(slots=True)
class ServerRun:
    version: str = ""
    ready_s: float = 0.0
    exit_status: int | None = None
    log_path: Path | None = None
    log_problems: list[str] = field(default_factory=list)
    # protocol -> points, in the order of plan.concurrency
    points: dict[str, list[Measurement]] = field(default_factory=dict)


def measure_server(
    label: str,
    server: NaiadProcess | TritonProcess,
    plan: Plan,
    x: np.ndarray,
    run: ServerRun,
) -> None:
    """Check, then measure every point of one running server; late retries before it stops."""
    run.ready_s = server.ready_s or 0.0
    run.version = server_version(server.http_url)
    print(f"{label} ready in {run.ready_s:.2f} s (pid {server.pid}, {run.version})", flush=True)
    readers = server_cpu_readers(server)
    recorder = Recorder(plan.retries)
    for protocol in plan.protocols:
        url = server.http_url if protocol == "http" else server.grpc_url
        check_identity(label, protocol, url, x)
        points = run.points.setdefault(protocol, [])
        for concurrency in plan.concurrency:
            measure = server_point(
                f"{label} {protocol}", MODEL, protocol, url, x, concurrency, readers,
                warmup_s=plan.warmup_s, duration_s=plan.duration_s,
                use_perf_analyzer=plan.use_perf_analyzer,
                workdir=WORK_DIR / "perf_analyzer" / f"python-{label}",
            )  # fmt: skip
            recorder.record(points, measure)
    recorder.retry_late()
    # Answers must still be right after the load (a worker that died would show here).
    for protocol in plan.protocols:
        check_identity(
            label, protocol, server.http_url if protocol == "http" else server.grpc_url, x
        )


def triton_log_problems(lines: list[str]) -> list[str]:
    # glog format: "E1122 ..." errors, "W1122 ..." warnings (the CUDA ones are expected on CPU).
    return [line for line in lines if line[:1] in ("E", "W") and line[1:5].isdigit()]


def run_all(plan: Plan) -> dict[str, ServerRun]:
    x = np.arange(16, dtype=np.int32).reshape(1, 16) - 8  # negatives too
    runs: dict[str, ServerRun] = {}
    with tempfile.TemporaryDirectory(prefix="naiad-bench-python-") as tmp:
        repository = write_repository(Path(tmp) / "models")
        # One server at a time: Naiad is stopped before Triton starts.
        naiad_log = WORK_DIR / "naiad-python-server.log"
        naiad = NaiadProcess(repository, log_path=naiad_log)
        run = runs["naiad"] = ServerRun(log_path=naiad_log)
        with naiad:
            measure_server("naiad", naiad, plan, x, run)
        run.exit_status = naiad.process.returncode if naiad.process else None
        run.log_problems = log_problems(naiad.lines)
        if not plan.triton:
            return runs
        triton_log = WORK_DIR / "triton-python-server.log"
        triton = TritonProcess(repository, log_path=triton_log)
        run = runs["triton"] = ServerRun(log_path=triton_log)
        with triton:
            measure_server("triton", triton, plan, x, run)
        run.exit_status = triton.process.returncode if triton.process else None
        run.log_problems = triton_log_problems(triton.lines)
    return runs


# --- report ----------------------------------------------------------------------------------


def peers_versions(*packages: str) -> str:
    """The Triton side's Python, numpy and ``packages``, from setup.sh's ``versions.txt``."""
    found = {"Python": "?", **dict.fromkeys(("numpy", *packages), "?")}
    with contextlib.suppress(OSError):
        for line in (PEERS_DIR / "versions.txt").read_text().splitlines():
            if line.startswith("python "):
                found["Python"] = line.split()[1]
            name, _, version = line.partition("==")
            if name in found and version:
                found[name] = version
    return ", ".join(f"{name} {version}" for name, version in found.items())


def versions(runs: dict[str, ServerRun]) -> str:
    parts = [
        f"naiad {naiad_version} (Python {platform.python_version()}, "
        f"numpy {importlib.metadata.version('numpy')})",
    ]
    if "triton" in runs:
        parts.append(f"{runs['triton'].version} python backend ({peers_versions()} in its stub)")
    parts.append(perf_analyzer_version())
    parts.append(f"warm-up client tritonclient {importlib.metadata.version('tritonclient')}")
    return ", ".join(parts)


def _disturbed(point: Measurement) -> str:
    return " (disturbed)" if others_cores(point) > DISTURBED_CORES else ""


def comparison_table(runs: dict[str, ServerRun]) -> list[str]:
    """Naiad / Triton per protocol and concurrency (only a header without a Triton run)."""
    lines = [
        "Throughput ratio above 1 and p99 ratio below 1 favour Naiad.",
        "",
        "| protocol | concurrency | Naiad infer/s | Triton infer/s | throughput Naiad/Triton | "
        "Naiad p99 (us) | Triton p99 (us) | p99 Naiad/Triton |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    naiad, triton = runs["naiad"], runs.get("triton")
    for protocol, points in naiad.points.items():
        for index, ours in enumerate(points):
            if triton is None:
                continue
            theirs = triton.points[protocol][index]
            lines.append(
                f"| {protocol} | {ours.concurrency} | {ours.infer_per_s:.0f}{_disturbed(ours)} | "
                f"{theirs.infer_per_s:.0f}{_disturbed(theirs)} | "
                f"**{ours.infer_per_s / theirs.infer_per_s:.2f}** | {ours.p99_us:.0f} | "
                f"{theirs.p99_us:.0f} | {ours.p99_us / theirs.p99_us:.2f} |"
            )
    return lines


def points_table(runs: dict[str, ServerRun]) -> list[str]:
    lines = [
        "| server | protocol | concurrency | infer/s | p50 (us) | p99 (us) | CPU (cores) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for label, run in runs.items():
        for protocol, points in run.points.items():
            for point in points:
                lines.append(
                    f"| {label} | {protocol} | {point.concurrency} | {point.infer_per_s:.1f} | "
                    f"{point.p50_us:.0f} | {point.p99_us:.0f} | {cpu_text(point)} |"
                )
    return lines


def server_lines(runs: dict[str, ServerRun]) -> list[str]:
    """A list item per server run: ready time, exit status, log, and the log's problems."""
    lines = []
    for label, run in runs.items():
        log = run.log_path.relative_to(BENCH_DIR.parent) if run.log_path else "?"
        lines.append(
            f"- {label}: ready {run.ready_s:.2f} s after start, exit status after SIGTERM "
            f"{run.exit_status}, log `{log}`"
        )
        if run.log_problems:
            lines.append("  - log lines with errors or warnings:")
            lines += [f"    - `{line.strip()}`" for line in run.log_problems[:20]]
        else:
            lines.append("  - no errors or warnings in the log")
    return lines


def render(
    plan: Plan, runs: dict[str, ServerRun], command: str, started: datetime.datetime, load: str
) -> str:
    window_ms = max(200, int(plan.duration_s * 1000 / 3))
    lines = [
        "# Naiad vs Triton 2.51: empty python model (identity INT32 [16])",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}; load average (1, 5, 15 min) {load}",
        f"- Versions: {versions(runs)}",
        "- Model: python backend identity, INT32 [16] -> INT32 [16], `max_batch_size: 8`, no "
        "dynamic batching, 1 CPU instance; one repository directory, so the same `config.pbtxt` "
        "and `model.py` (below), served by each server in turn, never both at once",
        f"- Load: perf_analyzer, batch-1 requests, 3 windows of {window_ms} ms merged per point "
        f"(stability check relaxed so each point takes a fixed time), after a "
        f"{plan.warmup_s:g} s warm-up with Python clients; a point whose window saw more than "
        f"{DISTURBED_CORES} cores used by other processes is measured again (up to "
        f"{plan.retries} time(s) right away, once more before that server stops; the least "
        "disturbed attempt is kept)",
        "- Correctness: before and after its points, one request per protocol to each server "
        "must return its input unchanged (catches the 0-byte outputs of Triton's stub under "
        "numpy 2)",
        f"- Reproduce: `{command}`",
        "",
        "**The machine may be shared** with other work (tests, other benchmarks) during a run. The "
        "numbers are noisy: compare the ratios, not the absolute rates, and give little weight "
        "to points marked (disturbed). This is one run, not a best of several.",
        "",
        "## Naiad / Triton",
        "",
        *comparison_table(runs),
        "",
        "## All points",
        "",
        "CPU is in cores used on average while perf_analyzer ran (2.00 = both cores of a 2-core "
        "machine): `server` is the server's process tree (Naiad and its python worker, or "
        "tritonserver and its `triton_python_backend_stub`), of which `event loop` is Naiad's "
        "event-loop thread, `client` perf_analyzer, `others` "
        f"every other process on the machine; above {DISTURBED_CORES} cores the point is marked "
        "(disturbed).",
        "",
        *points_table(runs),
        "",
        "## Servers",
        "",
        *server_lines(runs),
        "",
        "## The model",
        "",
        "`identity/config.pbtxt`:",
        "",
        "```",
        CONFIG.rstrip(),
        "```",
        "",
        "`identity/1/model.py`:",
        "",
        "```python",
        MODEL_PY.rstrip(),
        "```",
    ]
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=5.0, help="measured time per point")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="warm-up before each point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--protocol", nargs="+", choices=["http", "grpc"], default=["http", "grpc"])
    add_retries_option(parser)
    parser.add_argument(
        "--smoke", action="store_true",
        help="1 s points, Naiad only, no retries: checks the harness end to end; writes no "
        "results file",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, default=RESULTS_PATH, help="Markdown results file (not in --smoke)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not triton_installed():
        print(
            f"perf_analyzer and tritonserver are not installed in {PEERS_DIR}; run "
            f"{PEERS_SCRIPTS / 'setup.sh'} {PEERS_DIR} (about a minute, needs PyPI)",
            file=sys.stderr,
        )
        return 2
    if args.smoke:
        plan = Plan(args.concurrency, args.protocol, 1.0, 0.5, smoke=True, retries=0, triton=False)
    else:
        plan = Plan(
            args.concurrency, args.protocol, args.duration_s, args.warmup_s, False, args.retries
        )
    command = shlex.join([".venv/bin/python", "benchmarks/bench_python.py", *sys.argv[1:]])
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    with timed("benchmark"):
        runs = run_all(plan)
    load = f"{load_before} before the run, {load_average()} after"
    if plan.smoke:
        for label, run in runs.items():
            for points in run.points.values():
                for point in points:
                    print(f"{label}: c={point.concurrency} {point.infer_per_s:.0f} infer/s")
        print("smoke run: Naiad only, no results file written")
        return 0
    report = render(plan, runs, command, started, load)
    print()
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
