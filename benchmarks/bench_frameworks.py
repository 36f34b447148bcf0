"""Benchmark: Naiad's PyTorch and FIL backends versus the raw frameworks in process.

Two models, batch-1 requests, concurrency 8 by default:

- a PyTorch MLP, FP32 ``[-1, 256] -> 1024 -> 1024 -> 10`` with ReLU (the ONNX benchmark's
  shape), saved as TorchScript and served by ``backend: "pytorch"``; raw is the loaded
  TorchScript module called under ``torch.inference_mode()`` from N Python threads;
- an XGBoost binary classifier, 100 trees of depth 6 over 32 features, saved as XGBoost
  JSON and served by ``backend: "fil"`` (``predict_proba``); raw is
  ``Booster.inplace_predict`` from N threads, with XGBoost's default threads and with one
  thread per call (much faster for single rows on a small machine).

The headline is Naiad throughput / raw throughput, against the faster raw variant. Load
comes from perf_analyzer when it is installed in ``benchmarks/.work/peers`` (see
``bench_onnx.py``), else from the Python closed-loop generator. Results go to stdout and
``benchmarks/results/frameworks.md``.

    python benchmarks/bench_frameworks.py [--duration-s 5] [--concurrency 8]
                                          [--protocol http grpc] [--python-client] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import platform
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xgboost as xgb

from bench_onnx import cpu_text, machine, steady
from loadgen import (
    CpuReader,
    Measurement,
    RequestFn,
    TritonCall,
    closed_loop,
    machine_busy_seconds,
    perf_analyzer_installed,
    perf_analyzer_version,
    process_cpu_seconds,
    server_point,
)
from naiad import __version__ as naiad_version
from naiad_process import NaiadProcess

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "results" / "frameworks.md"
WORK_DIR = BENCH_DIR / ".work"
FEATURES = 32


@dataclass(frozen=True)
class ServedModel:
    name: str
    input_name: str
    output_name: str
    x: np.ndarray
    expected: np.ndarray
    # Raw in-process variants: label -> request factory (one request callable per thread).
    raw: dict[str, Callable[[], RequestFn]]


def build_torch(root: Path) -> ServedModel:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(256, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 10),
    ).eval()
    version = root / "torch_mlp" / "1"
    version.mkdir(parents=True)
    torch.jit.script(mlp).save(str(version / "model.pt"))
    (root / "torch_mlp" / "config.pbtxt").write_text(
        'name: "torch_mlp"\nbackend: "pytorch"\nmax_batch_size: 8\n'
        'input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 256 ] } ]\n'
        'output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
    )
    module = torch.jit.load(str(version / "model.pt"))
    x = np.random.default_rng(0).normal(size=(1, 256)).astype(np.float32)
    tensor = torch.from_numpy(x)

    def call() -> Any:
        with torch.inference_mode():
            return module(tensor)

    expected = call().numpy()
    return ServedModel("torch_mlp", "INPUT__0", "OUTPUT__0", x, expected, {"torch": lambda: call})


def build_xgboost(root: Path) -> ServedModel:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2000, FEATURES)).astype(np.float32)
    label = (data[:, 0] + data[:, 1] * data[:, 2] > 0).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "nthread": 2},
        xgb.DMatrix(data, label=label),
        num_boost_round=100,
    )
    version = root / "xgboost" / "1"
    version.mkdir(parents=True)
    booster.save_model(str(version / "xgboost.json"))
    (root / "xgboost" / "config.pbtxt").write_text(
        'name: "xgboost"\nbackend: "fil"\nmax_batch_size: 8\n'
        f'input [ {{ name: "input__0" data_type: TYPE_FP32 dims: [ {FEATURES} ] }} ]\n'
        'output [ { name: "output__0" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'parameters [ { key: "model_type" value: { string_value: "xgboost_json" } },\n'
        '  { key: "output_class" value: { string_value: "true" } },\n'
        '  { key: "predict_proba" value: { string_value: "true" } } ]\n'
    )
    x = data[:1].copy()
    default = xgb.Booster(model_file=str(version / "xgboost.json"))
    single = xgb.Booster(model_file=str(version / "xgboost.json"))
    single.set_param({"nthread": 1})
    expected = np.asarray(default.inplace_predict(x), dtype=np.float32).reshape(1, 1)
    return ServedModel(
        "xgboost",
        "input__0",
        "output__0",
        x,
        expected,
        {
            "xgboost (default threads)": lambda: lambda: default.inplace_predict(x),
            "xgboost (nthread=1)": lambda: lambda: single.inplace_predict(x),
        },
    )


def check_output(protocol: str, url: str, model: ServedModel) -> None:
    call = TritonCall(protocol, url, model.name, model.x, model.input_name, model.output_name)
    try:
        got = call().as_numpy(model.output_name)
    finally:
        call.close()
    if got is None or not np.allclose(got, model.expected, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"naiad {model.name} over {protocol}: {got!r} != {model.expected!r}")


@dataclass(frozen=True)
class Plan:
    duration_s: float
    warmup_s: float
    concurrency: list[int]
    protocols: list[str]
    retries: int
    use_perf_analyzer: bool


@dataclass
class Row:
    model: str
    target: str
    protocol: str
    point: Measurement


def run(plan: Plan, models: list[ServedModel], root: Path) -> tuple[list[Row], str]:
    rows: list[Row] = []
    own = {"process": process_cpu_seconds, "machine": machine_busy_seconds}
    for model in models:
        for label, factory in model.raw.items():
            for concurrency in plan.concurrency:
                print(f"raw {label}, concurrency {concurrency}", flush=True)
                point = steady(
                    lambda f=factory, c=concurrency, n=label: closed_loop(  # type: ignore[misc]
                        n, f, c, plan.warmup_s, plan.duration_s, own
                    ),
                    plan.retries,
                )
                rows.append(Row(model.name, label, "in-process", point))
    log_path = WORK_DIR / "naiad-frameworks-server.log"
    with NaiadProcess(root, log_path=log_path) as server:
        readers: dict[str, CpuReader] = {
            "server": server.cpu_seconds,
            "machine": machine_busy_seconds,
        }
        for model in models:
            for protocol in plan.protocols:
                url = server.http_url if protocol == "http" else server.grpc_url
                check_output(protocol, url, model)
                for concurrency in plan.concurrency:
                    print(f"naiad {model.name} {protocol}, concurrency {concurrency}", flush=True)
                    measure = server_point(
                        f"naiad {model.name} {protocol}", model.name, protocol, url, model.x,
                        concurrency, readers, warmup_s=plan.warmup_s, duration_s=plan.duration_s,
                        use_perf_analyzer=plan.use_perf_analyzer,
                        workdir=WORK_DIR / "perf_analyzer", input_name=model.input_name,
                        output_name=model.output_name,
                    )  # fmt: skip
                    point = steady(measure, plan.retries)
                    rows.append(Row(model.name, "Naiad", protocol, point))
        log = server.log
    return rows, log


def ratios(rows: list[Row], model: str, concurrency: int) -> list[tuple[str, float, float]]:
    """(protocol, Naiad / best raw, Naiad / each raw ...) for one model and concurrency."""
    raw = {
        r.target: r.point.infer_per_s
        for r in rows
        if r.model == model and r.protocol == "in-process" and r.point.concurrency == concurrency
    }
    best = max(raw.values())
    return [
        (r.protocol, r.point.infer_per_s / best, r.point.infer_per_s)
        for r in rows
        if r.model == model and r.target == "Naiad" and r.point.concurrency == concurrency
    ]


def render(plan: Plan, rows: list[Row], log: str, argv: list[str]) -> str:
    names = ["torch", "xgboost-cpu", "treelite", "numpy", "tritonclient", "grpcio"]
    versions = [f"naiad {naiad_version}", f"Python {platform.python_version()}"]
    versions += [f"{n} {importlib.metadata.version(n)}" for n in names]
    if plan.use_perf_analyzer:
        versions.append(perf_analyzer_version())
    generator = (
        "perf_analyzer (3 windows merged, after a warm-up)"
        if plan.use_perf_analyzer
        else "Python closed loop, one tritonclient per thread"
    )
    lines = [
        "# Naiad framework backends vs the raw frameworks in process, batch-1 requests",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Versions: {', '.join(versions)}",
        "- PyTorch model: TorchScript MLP FP32 [-1, 256] -> 1024 -> 1024 -> 10 (ReLU), "
        '`backend: "pytorch"`, `max_batch_size: 8`, 1 instance, no parameters',
        "- XGBoost model: binary:logistic, 100 trees, depth 6, 32 features, XGBoost JSON, "
        '`backend: "fil"` with `predict_proba`, `max_batch_size: 8`, 1 instance',
        "- Raw: the same files loaded in this process and called from N Python threads "
        "(TorchScript under `torch.inference_mode()`; `Booster.inplace_predict`)",
        f"- Load generator for Naiad: {generator}; windows of {plan.duration_s} s",
        f"- Reproduce: `{shlex.join(['.venv/bin/python', 'benchmarks/bench_frameworks.py', *argv])}`",
        "- CPU: `others` is what processes outside the benchmark used during the window; "
        "`(disturbed)` marks windows where that exceeded 0.25 cores (a shared machine)",
        "",
        "## Naiad / raw framework throughput (against the faster raw variant)",
        "",
        "| model | protocol | " + " | ".join(f"concurrency {c}" for c in plan.concurrency) + " |",
        "|---|---|" + "---:|" * len(plan.concurrency),
    ]
    for model in dict.fromkeys(r.model for r in rows):
        for protocol in plan.protocols:
            cells = []
            for concurrency in plan.concurrency:
                found = [q for p, q, _ in ratios(rows, model, concurrency) if p == protocol]
                cells.append(f"{found[0]:.2f}" if found else "-")
            lines.append(f"| {model} | {protocol} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## All points",
        "",
        "| model | target | protocol | concurrency | infer/s | p50 (us) | p99 (us) | CPU (cores) |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        p = row.point
        lines.append(
            f"| {row.model} | {row.target} | {row.protocol} | {p.concurrency} | "
            f"{p.infer_per_s:.1f} | {p.p50_us:.0f} | {p.p99_us:.0f} | {cpu_text(p)} |"
        )
    problems = [line for line in log.splitlines() if line[:1] in ("E", "W")]
    lines += ["", "## Server", ""]
    lines += [f"- `{line}`" for line in problems[:10]] or ["- No errors or warnings in the log."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8])
    parser.add_argument("--protocol", nargs="+", default=["http", "grpc"])
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--python-client", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="1 s windows, no results file")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    plan = Plan(
        duration_s=1.0 if args.smoke else args.duration_s,
        warmup_s=0.5 if args.smoke else args.warmup_s,
        concurrency=args.concurrency,
        protocols=args.protocol,
        retries=0 if args.smoke else args.retries,
        use_perf_analyzer=not args.python_client and perf_analyzer_installed(),
    )
    WORK_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="naiad-bench-frameworks-") as tmp:
        root = Path(tmp)
        models = [build_torch(root), build_xgboost(root)]
        rows, log = run(plan, models, root)
    report = render(plan, rows, log, argv)
    print(report)
    if not args.smoke:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
