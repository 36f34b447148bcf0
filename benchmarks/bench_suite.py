"""The benchmark suite: every scenario of issue 10 in one run, with its targets and plots.

Scenarios, one after the other, one server at a time:

(a) The ONNX MLP, FP32 ``[-1, 256] -> 1024 -> 1024 -> 10``, batch-1 requests at concurrency 1,
    8 and 32 over HTTP and gRPC: raw in-process ONNX Runtime (the baseline); Naiad's ORT
    backend without and with dynamic batching; the real Triton 2.51 serving the same ONNX file
    through its python backend (``bench_batching.MLP_MODEL_PY``: ONNX Runtime called from
    ``model.py``), without and with dynamic batching; with ``--naiad-python-mlp``, Naiad
    serving that same ``model.py`` too.
(b) An empty python model (identity INT32 ``[16]``), the same ``model.py`` served by Naiad and
    by Triton, concurrency 1 and 8 (``bench_python.py``).
(c), (d), (e) Start to ready, RSS idle and under load, BYTES and 16 MiB FP32 transfer against a
    plain grpcio echo (``bench_footprint.py``).

The load comes from perf_analyzer when it is installed in ``benchmarks/.work/peers`` (the peers'
``setup.sh``), else from the Python closed loop, and then the Triton rows say they were not
measured. The report states each target of issue 10 as met or missed, with the value measured
in this run. Writes ``benchmarks/results/suite.md`` with ``suite_throughput.png``,
``suite_p99.png`` and ``suite_transfer.png`` beside it.

    .venv/bin/python benchmarks/bench_suite.py            # full run, 5 to 10 minutes
    .venv/bin/python benchmarks/bench_suite.py --smoke    # harness check, about 30 s
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import bench_footprint
import bench_python
from bench_batching import CONFIG, MLP_MODEL_PY, MODELS, measure_mlp, write_repository
from bench_onnx import (
    DISTURBED_CORES,
    SIZES,
    Recorder,
    add_retries_option,
    cpu_text,
    default_session,
    load_average,
    log_problems,
    machine,
    ort_point,
    others_cores,
)
from bench_python import ServerRun, TritonProcess, server_version, triton_log_problems
from loadgen import (
    LOOP,
    PEERS_DIR,
    PEERS_SCRIPTS,
    Measurement,
    install_perf_analyzer,
    perf_analyzer_installed,
    perf_analyzer_version,
    triton_installed,
)
from naiad import __version__ as naiad_version
from naiad.examples import onnx_models
from naiad_process import NaiadProcess
from targets import Target, not_measured, target_table

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results" / "suite.md"
WORK_DIR = BENCH_DIR / ".work"

CONCURRENCY = [1, 8, 32]
IDENTITY_CONCURRENCY = [1, 8]
PROTOCOLS = ["http", "grpc"]
PROTOCOL_NAMES = {"http": "HTTP", "grpc": "gRPC"}
SETUP_COMMAND = f"{PEERS_SCRIPTS / 'setup.sh'} {PEERS_DIR.relative_to(ROOT)}"

# Issue 10's targets for (a) and (b); (c) to (e) are bench_footprint's.
TARGET_MLP_VS_TRITON = 1.3
TARGET_MLP_VS_RAW = 0.8
TARGET_BATCHED_VS_RAW = 3.0
TARGET_BATCHED_P99 = 2.0
TARGET_IDENTITY_VS_TRITON = 1.5

# (server, model) -> the series' name in tables and plots.
SERIES = {
    ("naiad", "mlp_unbatched"): "Naiad, ORT backend, no batching",
    ("naiad", "mlp_batched"): "Naiad, ORT backend, dynamic batching",
    ("naiad python", "mlp_unbatched"): "Naiad, python backend, no batching",
    ("naiad python", "mlp_batched"): "Naiad, python backend, dynamic batching",
    ("triton", "mlp_unbatched"): "Triton, python backend, no batching",
    ("triton", "mlp_batched"): "Triton, python backend, dynamic batching",
}
RAW_SERIES = "raw ORT in process, batch 1"


@dataclass(frozen=True, slots=True)
class Plan:
    duration_s: float
    warmup_s: float
    retries: int
    use_perf_analyzer: bool
    # Why Triton is not measured; empty when it is.
    triton_skipped: str
    naiad_python_mlp: bool
    smoke: bool
    footprint: bench_footprint.Plan

    @property
    def triton(self) -> bool:
        return not self.triton_skipped


@dataclass(slots=True)
class MlpResults:
    raw: list[Measurement] = field(default_factory=list)
    # server -> (model, protocol) -> points in CONCURRENCY order
    served: dict[str, dict[tuple[str, str], list[Measurement]]] = field(default_factory=dict)
    servers: dict[str, ServerRun] = field(default_factory=dict)


@dataclass(slots=True)
class Results:
    mlp: MlpResults
    identity: dict[str, ServerRun]
    footprint: bench_footprint.Results
    took_s: float = 0.0


# --- the run ---------------------------------------------------------------------------------


def run_mlp(plan: Plan) -> MlpResults:
    """(a): raw ORT first (no server running), then each server in turn."""
    results = MlpResults()
    model = onnx_models.mlp(SIZES)
    x = np.random.default_rng(0).standard_normal((1, SIZES[0])).astype(np.float32)
    (expected,) = default_session(model).run(["OUTPUT0"], {"INPUT0": x})
    print("(a) ONNX MLP: raw ONNX Runtime in process", flush=True)
    raw = Recorder(plan.retries)
    for concurrency in CONCURRENCY:
        measure = ort_point(
            RAW_SERIES, lambda: default_session(model), x, concurrency,
            plan.warmup_s, plan.duration_s,
        )  # fmt: skip
        raw.record(results.raw, measure)

    with tempfile.TemporaryDirectory(prefix="naiad-suite-") as tmp:
        ort_repository = write_repository(Path(tmp) / "ort", model, "onnxruntime")
        python_repository = write_repository(Path(tmp) / "python", model, "python")
        # Made when their turn comes: Triton picks its free ports when it is made.
        servers: dict[str, Callable[[], NaiadProcess | TritonProcess]] = {
            "naiad": lambda: NaiadProcess(ort_repository, log_path=_log("naiad-suite-mlp"))
        }
        if plan.naiad_python_mlp:
            servers["naiad python"] = lambda: NaiadProcess(
                python_repository, log_path=_log("naiad-suite-python-mlp")
            )
        if plan.triton:
            servers["triton"] = lambda: TritonProcess(python_repository, _log("triton-suite-mlp"))
        for label, make in servers.items():
            server = make()
            run = results.servers[label] = ServerRun(log_path=server.log_path)
            with server:
                run.ready_s = server.ready_s or 0.0
                run.version = server_version(server.http_url)
                print(f"(a) {label} ready in {run.ready_s:.2f} s ({run.version})", flush=True)
                results.served[label] = measure_mlp(
                    label, server, x, expected, CONCURRENCY, PROTOCOLS,
                    warmup_s=plan.warmup_s, duration_s=plan.duration_s,
                    use_perf_analyzer=plan.use_perf_analyzer, retries=plan.retries,
                    workdir=WORK_DIR / "perf_analyzer" / f"suite-{label.replace(' ', '-')}",
                )  # fmt: skip
            run.exit_status = server.process.returncode if server.process else None
            is_triton = isinstance(server, TritonProcess)
            run.log_problems = (triton_log_problems if is_triton else log_problems)(server.lines)
    raw.retry_late()
    return results


def _log(name: str) -> Path:
    return WORK_DIR / f"{name}.log"


def run(plan: Plan) -> Results:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    mlp = run_mlp(plan)
    print("(b) identity python model", flush=True)
    identity_plan = bench_python.Plan(
        IDENTITY_CONCURRENCY, PROTOCOLS, plan.duration_s, plan.warmup_s, plan.smoke,
        plan.retries, use_perf_analyzer=plan.use_perf_analyzer, triton=plan.triton,
    )  # fmt: skip
    identity = bench_python.run_all(identity_plan)
    footprint = bench_footprint.run(plan.footprint)
    return Results(mlp, identity, footprint, time.monotonic() - began)


def estimate_s(plan: Plan) -> float:
    """Roughly how long ``run`` takes when no point is measured again."""
    point = plan.warmup_s + plan.duration_s
    if plan.use_perf_analyzer:
        # A process start per point, and three windows of at least 200 ms each.
        point = plan.warmup_s + max(0.6, plan.duration_s) + 0.7
    mlp_servers = 1 + plan.naiad_python_mlp + plan.triton
    identity_servers = 1 + plan.triton
    starts = 3.0 * (mlp_servers + identity_servers) + 5.0 * plan.triton  # Triton drains slowly
    fp = plan.footprint
    footprint = (
        1.5 * (fp.starts + 1) + 3 + fp.warmup_s + fp.load_s + 8 * (fp.warmup_s + fp.transfer_s)
    )
    raw = len(CONCURRENCY) * (plan.warmup_s + plan.duration_s)
    points = len(PROTOCOLS) * (
        mlp_servers * len(MODELS) * len(CONCURRENCY) + identity_servers * len(IDENTITY_CONCURRENCY)
    )
    return raw + points * point + starts + footprint


# --- targets ---------------------------------------------------------------------------------


def _at(points: list[Measurement], concurrency: int) -> Measurement:
    return next(point for point in points if point.concurrency == concurrency)


def _flag(*points: Measurement) -> str:
    disturbed = any(others_cores(point) > DISTURBED_CORES for point in points)
    return " (disturbed)" if disturbed else ""


def _ratio_target(
    name: str, ours: Measurement, theirs: Measurement, minimum: float, why: str = ""
) -> Target:
    ratio = ours.infer_per_s / theirs.infer_per_s
    measured = (
        f"{ratio:.2f} ({ours.infer_per_s:.0f} / {theirs.infer_per_s:.0f} infer/s)"
        f"{_flag(ours, theirs)}"
    )
    met = ratio >= minimum
    return Target(name, measured, met, "" if met else why)


# --- why a target is missed, in the run's own CPU numbers --------------------------------------
# CPU per request = cores a party used during the window / the window's throughput.


def _us(point: Measurement, party: str) -> float:
    """A party's CPU per request in microseconds (0 when it was not read)."""
    if point.infer_per_s <= 0:
        return 0.0
    return point.cpu_cores.get(party, 0.0) / point.infer_per_s * 1e6


def _cores() -> int:
    return os.cpu_count() or 1


def _versus_server_why(ours: Measurement, theirs: Measurement, needed: float) -> str:
    """Why Naiad did not reach ``needed`` infer/s: its per-request CPU against Triton's, the
    ceiling one event loop sets, and the ceiling the machine's cores set."""
    server, loop, client = _us(ours, "server"), _us(ours, LOOP), _us(ours, "client")
    text = (
        f"needs {needed:.0f} infer/s. CPU per request: Naiad's server {server:.0f} us, "
        f"Triton's {_us(theirs, 'server'):.0f} us"
    )
    if loop:
        text += (
            f"; Naiad's event-loop thread {loop:.0f} us of it, busy "
            f"{ours.cpu_cores[LOOP]:.2f} of its one core (one loop caps at "
            f"{1e6 / loop:.0f} infer/s)"
        )
    if server + client:
        text += (
            f"; with the load generator's {client:.0f} us, {_cores()} cores cap Naiad at "
            f"{_cores() * 1e6 / (server + client):.0f} infer/s"
        )
    return text


def _budget_why(ours: Measurement, needed: float, model_us: float = 0.0, model: str = "") -> str:
    """Why no server could reach ``needed`` infer/s on this machine: the CPU each request
    may use at that rate, against what the model (when given) and the load generator alone
    take."""
    budget = _cores() * 1e6 / needed
    client = _us(ours, "client")
    left = budget - model_us - client
    text = f"needs {needed:.0f} infer/s: {_cores()} cores give {budget:.0f} us of CPU per request; "
    if model:
        text += f"{model} took {model_us:.0f} us and the load generator {client:.0f} us"
    else:
        text += f"the load generator alone took {client:.0f} us"
    if left <= 0:
        return text + ", already over it with no server at all"
    return text + (
        f", leaving {left:.0f} us for a server's own work; Naiad's server used "
        f"{_us(ours, 'server'):.0f} us (the model included)"
    )


def targets(plan: Plan, results: Results) -> list[Target]:
    """Every target row, each of (a) and (b) once per protocol; then (c) to (e)."""
    naiad, triton = results.mlp.served["naiad"], results.mlp.served.get("triton")
    raw = {point.concurrency: point for point in results.mlp.raw}
    identity_naiad, identity_triton = results.identity["naiad"], results.identity.get("triton")

    def mlp_vs_triton(protocol: str, name: str) -> Target:
        name += f"Naiad / Triton python backend >= {TARGET_MLP_VS_TRITON}"
        if triton is None:
            return not_measured(name, plan.triton_skipped)
        ours = _at(naiad[("mlp_unbatched", protocol)], 8)
        theirs = _at(triton[("mlp_unbatched", protocol)], 8)
        why = _versus_server_why(ours, theirs, TARGET_MLP_VS_TRITON * theirs.infer_per_s)
        return _ratio_target(name, ours, theirs, TARGET_MLP_VS_TRITON, why)

    def mlp_vs_raw(protocol: str, name: str) -> Target:
        name += f"Naiad / raw ORT batch 1 (8 threads) >= {TARGET_MLP_VS_RAW}"
        ours = _at(naiad[("mlp_unbatched", protocol)], 8)
        needed = TARGET_MLP_VS_RAW * raw[8].infer_per_s
        why = _budget_why(ours, needed, _us(raw[8], "process"), "raw ORT's own call")
        return _ratio_target(name, ours, raw[8], TARGET_MLP_VS_RAW, why)

    def batched_vs_raw(protocol: str, name: str) -> Target:
        name += f"Naiad / raw ORT batch 1 (1 thread) >= {TARGET_BATCHED_VS_RAW:.0f}"
        ours = _at(naiad[("mlp_batched", protocol)], 32)
        needed = TARGET_BATCHED_VS_RAW * raw[1].infer_per_s
        # A batched run costs ORT less per sample than a batch-1 call: leaving the model out
        # keeps the budget generous.
        why = _budget_why(ours, needed)
        return _ratio_target(name, ours, raw[1], TARGET_BATCHED_VS_RAW, why)

    def batched_p99(protocol: str, name: str) -> Target:
        name += f"Naiad p99 with dynamic batching / without <= {TARGET_BATCHED_P99:.0f}"
        batched = _at(naiad[("mlp_batched", protocol)], 32)
        unbatched = _at(naiad[("mlp_unbatched", protocol)], 32)
        ratio = batched.p99_us / unbatched.p99_us
        measured = (
            f"{ratio:.2f} ({batched.p99_us / 1e3:.1f} / {unbatched.p99_us / 1e3:.1f} ms)"
            f"{_flag(batched, unbatched)}"
        )
        return Target(name, measured, ratio <= TARGET_BATCHED_P99)

    def identity_vs_triton(protocol: str, name: str) -> Target:
        name += f"Naiad / Triton >= {TARGET_IDENTITY_VS_TRITON}"
        if identity_triton is None:
            return not_measured(name, plan.triton_skipped)
        ours = _at(identity_naiad.points[protocol], 8)
        theirs = _at(identity_triton.points[protocol], 8)
        why = _versus_server_why(ours, theirs, TARGET_IDENTITY_VS_TRITON * theirs.infer_per_s)
        return _ratio_target(name, ours, theirs, TARGET_IDENTITY_VS_TRITON, why)

    def identity_p99(protocol: str, name: str) -> Target:
        name += "p99 Naiad <= Triton"
        if identity_triton is None:
            return not_measured(name, plan.triton_skipped)
        ours = _at(identity_naiad.points[protocol], 1)
        theirs = _at(identity_triton.points[protocol], 1)
        measured = (
            f"{ours.p99_us / 1e3:.2f} ms vs {theirs.p99_us / 1e3:.2f} ms{_flag(ours, theirs)}"
        )
        met = ours.p99_us <= theirs.p99_us
        why = (
            f"at concurrency 1 a request's latency is mostly its serial CPU work: Naiad's "
            f"server used {_us(ours, 'server'):.0f} us per request (event loop "
            f"{_us(ours, LOOP):.0f} us), Triton's {_us(theirs, 'server'):.0f} us; p50 "
            f"{ours.p50_us / 1e3:.2f} ms vs {theirs.p50_us / 1e3:.2f} ms"
        )
        return Target(name, measured, met, "" if met else why)

    checks: list[tuple[str, Callable[[str, str], Target]]] = [
        ("MLP c=8, no batching, {}: ", mlp_vs_triton),
        ("MLP c=8, no batching, {}: ", mlp_vs_raw),
        ("MLP c=32, dynamic batching, {}: ", batched_vs_raw),
        ("MLP c=32, {}: ", batched_p99),
        ("identity python c=8, {}: ", identity_vs_triton),
        ("identity python c=1, {}: ", identity_p99),
    ]
    rows = [
        check(protocol, scenario.format(PROTOCOL_NAMES[protocol]))
        for scenario, check in checks
        for protocol in PROTOCOLS
    ]
    return rows + bench_footprint.targets(results.footprint)


# --- report ----------------------------------------------------------------------------------


def versions(plan: Plan, results: Results) -> str:
    names = ["onnxruntime", "numpy", "tritonclient", "grpcio", "psutil"]
    parts = [f"naiad {naiad_version}", f"Python {platform.python_version()}"]
    parts += [f"{name} {importlib.metadata.version(name)}" for name in names]
    if "triton" in results.mlp.servers:
        parts.append(
            f"{results.mlp.servers['triton'].version} python backend (its stub: "
            f"{bench_python.peers_versions('onnxruntime')})"
        )
    if plan.use_perf_analyzer:
        parts.append(perf_analyzer_version())
    return ", ".join(parts)


def load_generator(plan: Plan) -> str:
    if plan.use_perf_analyzer:
        window_ms = max(200, int(plan.duration_s * 1000 / 3))
        return (
            f"perf_analyzer, batch-1 requests, 3 windows of {window_ms} ms merged per point "
            "(stability check relaxed so each point takes a fixed time), after a "
            f"{plan.warmup_s:g} s warm-up with Python clients"
        )
    return (
        "Python closed loop (one tritonclient per thread, in the benchmark process, so it "
        f"shares the CPU with the server), {plan.warmup_s:g} s warm-up then a "
        f"{plan.duration_s:g} s window per point"
        + ("" if perf_analyzer_installed() else f" (perf_analyzer: run `{SETUP_COMMAND}`)")
    )


def _series(results: MlpResults) -> list[tuple[str, str, list[Measurement]]]:
    """(name, protocol, points) of every served series, in SERIES order."""
    rows = []
    for (server, model), name in SERIES.items():
        for protocol in PROTOCOLS:
            points = results.served.get(server, {}).get((model, protocol))
            if points is not None:
                rows.append((name, protocol, points))
    return rows


def mlp_tables(plan: Plan, results: MlpResults) -> list[str]:
    raw = {point.concurrency: point for point in results.raw}
    lines = [
        "Throughput (infer/s) and p99 latency (ms) at each concurrency:",
        "",
        "| series | protocol | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " |",
        "|---|---|" + "---:|" * len(CONCURRENCY),
        f"| {RAW_SERIES} | in process | "
        + " | ".join(f"{p.infer_per_s:.0f} / {p.p99_us / 1e3:.1f} ms" for p in results.raw)
        + " |",
    ]
    for name, protocol, points in _series(results):
        lines.append(
            f"| {name} | {PROTOCOL_NAMES[protocol]} | "
            + " | ".join(f"{p.infer_per_s:.0f} / {p.p99_us / 1e3:.1f} ms" for p in points)
            + " |"
        )
    if not plan.triton:
        lines += ["", f"Triton: not measured: {plan.triton_skipped}."]
    lines += [
        "",
        "All points. CPU is in cores used on average during the window (2.00 = both cores of a "
        "2-core machine): `server` is the server's process tree (with Naiad's python worker or "
        "Triton's `triton_python_backend_stub`), of which `event loop` is Naiad's event-loop "
        "thread (both frontends and the core service), `client` the load generator, `process` "
        f"the raw ORT process, `others` every other process; above {DISTURBED_CORES} cores a "
        "point is marked (disturbed).",
        "",
        "| series | protocol | concurrency | infer/s | p50 (us) | p99 (us) | CPU (cores) | "
        "/ raw ORT at the same concurrency |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    rows = [(RAW_SERIES, "in process", results.raw)]
    rows += [(name, PROTOCOL_NAMES[p], points) for name, p, points in _series(results)]
    for name, protocol, points in rows:
        for point in points:
            ratio = point.infer_per_s / raw[point.concurrency].infer_per_s
            lines.append(
                f"| {name} | {protocol} | {point.concurrency} | {point.infer_per_s:.1f} | "
                f"{point.p50_us:.0f} | {point.p99_us:.0f} | {cpu_text(point)} | {ratio:.2f} |"
            )
    return lines


def render(
    plan: Plan,
    results: Results,
    command: str,
    started: datetime.datetime,
    load: str,
    images: dict[str, str],
) -> str:
    ort_config = CONFIG.format(
        name="mlp_batched", backend="onnxruntime", width=SIZES[0], classes=SIZES[-1],
        batching=MODELS["mlp_batched"],
    )  # fmt: skip
    lines = [
        "# Naiad benchmark suite"
        + (" (smoke run: a harness check, the numbers mean nothing)" if plan.smoke else ""),
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {results.took_s / 60:.1f} min",
        f"- Machine: {machine()}",
        f"- Load average (1, 5, 15 min): {load}",
        f"- Versions: {versions(plan, results)}",
        f"- Load generator: {load_generator(plan)}",
        "- Triton 2.51: " + ("measured" if plan.triton else f"not measured: {plan.triton_skipped}"),
        f"- Reproduce: `{command}` (the peers first: `{SETUP_COMMAND}`)",
        "",
        "One run on one machine, one server at a time. The machine may be shared with other work: "
        "compare the ratios of this run, not absolute numbers across runs or machines, and give "
        f"little weight to points marked (disturbed) (other processes used more than "
        f"{DISTURBED_CORES} cores during their window).",
        "",
        "## Targets",
        "",
        "A missed target's reason is given in this run's own CPU numbers: CPU per request is the "
        "cores a party used during its window divided by the window's throughput.",
        "",
        *target_table(targets(plan, results), why=True),
        "",
    ]
    if images:
        lines += [
            f"![throughput versus concurrency]({images['throughput']})",
            "",
            f"![p99 latency versus concurrency]({images['p99']})",
        ]
    else:
        lines.append("(No plots: matplotlib is not installed; it comes with the `bench` extra.)")
    lines += [
        "",
        "## (a) ONNX MLP, batch-1 requests",
        "",
        f"FP32 `[-1, {SIZES[0]}] -> " + " -> ".join(str(s) for s in SIZES[1:]) + "` "
        "(MatMul + Add, ReLU between). Raw ORT: `InferenceSession` with default session options "
        "called from N threads of this process, no server running. Naiad's ORT backend and the "
        "python backend `model.py` (below, used by Triton, whose build here has no ORT backend) "
        "each serve two models: `mlp_unbatched` (no dynamic batching: one ORT run per request) "
        "and `mlp_batched` (`dynamic_batching { max_queue_delay_microseconds: 0 }`: the queued "
        "requests in one ORT run), `max_batch_size: 32`, one CPU instance. Each model's answer "
        "is checked against raw ORT's before its points.",
        "",
        *mlp_tables(plan, results.mlp),
        "",
        "`mlp_batched/config.pbtxt` for Naiad's ORT backend (`mlp_unbatched` leaves out "
        '`dynamic_batching`; for the python backend `backend` is `"python"`):',
        "",
        "```",
        ort_config.strip(),
        "```",
        "",
        "`model.py` of the python backend:",
        "",
        "```python",
        MLP_MODEL_PY.rstrip(),
        "```",
        "",
        "## (b) Empty python model (identity INT32 [16])",
        "",
        "The same repository directory (`config.pbtxt` and the `model.py` of the worked example "
        "in the peers' README, `max_batch_size: 8`, no dynamic batching, one CPU instance) served "
        "by each server in turn; each must return its input unchanged before and after its "
        "points (see `bench_python.py`).",
        "",
        *bench_python.comparison_table(results.identity),
        *([] if plan.triton else ["", f"Triton: not measured: {plan.triton_skipped}."]),
        "",
        *bench_python.points_table(results.identity),
        "",
        "## (c), (d), (e) Footprint and transfer cost",
        "",
        *bench_footprint.sections(plan.footprint, results.footprint, "###"),
    ]
    if images:
        lines.append(f"![transfer latency]({images['transfer']})")
    lines += [
        "",
        "## Servers",
        "",
        *bench_python.server_lines(
            {f"{label} (a)": run for label, run in results.mlp.servers.items()}
            | {f"{label} (b)": run for label, run in results.identity.items()}
        ),
    ]
    return "\n".join(lines) + "\n"


# --- plots -----------------------------------------------------------------------------------


def plot(results: Results, output: Path, started: datetime.datetime) -> dict[str, str]:
    """Draw the PNGs beside ``output``: plot -> file name ("throughput", "p99", "transfer").

    Empty when matplotlib (the ``bench`` extra) is not installed: the plots are skipped.
    """
    try:
        import matplotlib
    except ImportError:
        print(
            "plots skipped: matplotlib is not installed (pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return {}
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    images: dict[str, str] = {}
    metrics: list[tuple[str, str, Callable[[Measurement], float], bool]] = [
        ("throughput", "throughput (infer/s)", lambda p: p.infer_per_s, False),
        ("p99", "p99 latency (ms, log scale)", lambda p: p.p99_us / 1e3, True),
    ]
    for key, ylabel, value, log_y in metrics:
        fig, axes = plt.subplots(1, len(PROTOCOLS), figsize=(7 * len(PROTOCOLS), 5), sharey=True)
        for ax, protocol in zip(np.atleast_1d(axes), PROTOCOLS, strict=True):
            for name, series_protocol, points in _series(results.mlp):
                if series_protocol == protocol:
                    xs = [p.concurrency for p in points]
                    ax.plot(xs, [value(p) for p in points], marker="o", label=name)
            raw = results.mlp.raw
            ax.plot(
                [p.concurrency for p in raw], [value(p) for p in raw],
                linestyle="--", color="black", marker="x", label=RAW_SERIES,
            )  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
            if log_y:
                ax.set_yscale("log")
            ax.set_xlabel("concurrency (batch-1 requests)")
            ax.set_title(PROTOCOL_NAMES[protocol])
            ax.grid(True, alpha=0.3)
        np.atleast_1d(axes)[0].set_ylabel(ylabel)
        np.atleast_1d(axes)[0].legend(fontsize="small")
        fig.suptitle(
            f"ONNX MLP, batch-1 requests: {key} versus concurrency\n"
            f"{started:%Y-%m-%d %H:%M} UTC, {machine()}"
        )
        fig.tight_layout()
        path = output.with_name(f"{output.stem}_{key}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        images[key] = path.name
    path = output.with_name(f"{output.stem}_transfer.png")
    bench_footprint.plot(results.footprint, path)
    images["transfer"] = path.name
    return images


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=5.0, help="measured time per point")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="warm-up before each point")
    add_retries_option(parser)
    loadgen = parser.add_mutually_exclusive_group()
    loadgen.add_argument(
        "--perf-analyzer", action="store_true",
        help=f"install perf_analyzer and tritonserver into {PEERS_DIR.relative_to(ROOT)} first "
        "when they are not there (about a minute, needs PyPI; never in --smoke)",
    )  # fmt: skip
    loadgen.add_argument(
        "--python-client", action="store_true",
        help="load with the Python closed loop even if perf_analyzer is installed",
    )  # fmt: skip
    parser.add_argument(
        "--naiad-python-mlp", action="store_true",
        help="also serve the MLP's python-backend model.py with Naiad (12 more points)",
    )  # fmt: skip
    parser.add_argument(
        "--smoke", action="store_true",
        help="tiny windows, Python load generator, Naiad only: checks the harness end to end in "
        "about 30 s; writes files only with --output",
    )  # fmt: skip
    parser.add_argument(
        "--triton",
        action="store_true",
        help="with --smoke: also start Triton when it is installed (about 20 s more)",
    )
    parser.add_argument(
        "--output", type=Path, default=None,
        help=f"Markdown report; the PNGs go beside it (default {RESULTS_PATH.relative_to(ROOT)}, "
        "none in --smoke)",
    )  # fmt: skip
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.perf_analyzer and not args.smoke and not triton_installed():
        install_perf_analyzer()
    if args.smoke:
        use_pa = args.perf_analyzer and perf_analyzer_installed()
    else:
        use_pa = not args.python_client and perf_analyzer_installed()
    if not triton_installed():
        skipped = f"Triton not installed; run {SETUP_COMMAND}"
    elif args.smoke and not args.triton:
        skipped = "Triton is skipped in --smoke (add --triton)"
    else:
        skipped = ""
    if args.smoke:
        footprint = bench_footprint.Plan(2, 4, 0.5, 0.3, 0.1, smoke=True)
        return Plan(0.3, 0.2, 0, use_pa, skipped, args.naiad_python_mlp, True, footprint)
    footprint = bench_footprint.Plan(5, 8, 5.0, 4.0, args.warmup_s, smoke=False)
    return Plan(
        args.duration_s, args.warmup_s, args.retries, use_pa, skipped, args.naiad_python_mlp,
        False, footprint,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    output: Path | None = args.output or (None if plan.smoke else RESULTS_PATH)
    if not triton_installed():
        print(
            f"perf_analyzer and tritonserver are not installed in {PEERS_DIR}: the Triton rows "
            f"are not measured and the Python load generator is used. To measure them, run "
            f"{SETUP_COMMAND} (about a minute, needs PyPI).",
            file=sys.stderr,
        )
    print(
        f"benchmark suite: about {estimate_s(plan) / 60:.1f} min without retries "
        f"({'perf_analyzer' if plan.use_perf_analyzer else 'Python load generator'}, "
        f"Triton {'measured' if plan.triton else 'not measured'})",
        flush=True,
    )
    command = shlex.join([".venv/bin/python", "benchmarks/bench_suite.py", *sys.argv[1:]])
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    results = run(plan)
    print(f"benchmark suite took {results.took_s:.1f} s", flush=True)
    load = f"{load_before} before the run, {load_average()} after"
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        images = plot(results, output, started)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            images = plot(results, Path(tmp) / "suite.md", started)  # the plot code runs, no files
    report = render(plan, results, command, started, load, images)
    print()
    print(report)
    if output is not None:
        output.write_text(report)
        print(f"wrote {output}" + "".join(f", {name}" for name in images.values()))
    else:
        print("smoke run: no files written (--output writes the report and plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
