"""Dynamic batching benchmark: the ONNX MLP at concurrency 32, with and without the batcher.

In one run it measures raw in-process ONNX Runtime at batch 1 (the baseline) and Naiad
serving the same model twice, once without ``dynamic_batching`` and once with it, then
prints throughput ratios against raw batch-1 and the p99 of batching against no batching.
It uses the real perf_analyzer when installed (``benchmarks/.work/peers``, see
``bench_onnx.py --perf-analyzer``), else the Python closed-loop generator.

Reproduce: ``.venv/bin/python benchmarks/bench_batching.py`` (``--smoke`` for a quick check).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench_onnx import SIZES, cpu_text, default_session, machine, ort_request, steady
from loadgen import (
    Measurement,
    RequestFn,
    TritonCall,
    closed_loop,
    machine_busy_seconds,
    perf_analyzer,
    perf_analyzer_installed,
    process_cpu_seconds,
)
from naiad.examples import onnx_models
from naiad_process import NaiadProcess

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "dynamic_batching.md"
WORK_DIR = BENCH_DIR / ".work" / "batching"

CONFIG = """
name: "{name}"
backend: "onnxruntime"
max_batch_size: 32
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {width} ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {classes} ] }} ]
{batching}
"""
MODELS = {
    "mlp_unbatched": "",
    # No added delay: batches form from what queues while the instance is busy.
    "mlp_batched": "dynamic_batching { max_queue_delay_microseconds: 0 }",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--protocol", nargs="+", choices=["http", "grpc"], default=["grpc", "http"])
    parser.add_argument("--smoke", action="store_true", help="short windows; checks it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration_s, args.warmup_s = 1.0, 0.3
    use_pa = perf_analyzer_installed() and not args.smoke
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    model = onnx_models.mlp(SIZES)
    x = np.random.default_rng(0).standard_normal((1, SIZES[0])).astype(np.float32)
    cpu = {"process": process_cpu_seconds, "machine": machine_busy_seconds}

    session: ort.InferenceSession = default_session(model)
    raw = steady(
        lambda session=session: closed_loop(  # type: ignore[misc]
            "raw ORT batch 1", ort_request(session, x), 1, args.warmup_s, args.duration_s, cpu
        ),
        1,
    )
    del session
    points: list[tuple[str, str, Measurement]] = []
    with tempfile.TemporaryDirectory(prefix="naiad-batching-") as tmp:
        root = Path(tmp)
        for name, batching in MODELS.items():
            (root / name / "1").mkdir(parents=True)
            (root / name / "1" / "model.onnx").write_bytes(model)
            (root / name / "config.pbtxt").write_text(
                CONFIG.format(name=name, width=SIZES[0], classes=SIZES[-1], batching=batching)
            )
        with NaiadProcess(root, log_path=WORK_DIR / "naiad.log") as server:
            readers = {"server": server.cpu_seconds, "machine": machine_busy_seconds}
            for protocol in args.protocol:
                url = server.http_url if protocol == "http" else server.grpc_url
                for name in MODELS:

                    def requests(
                        name: str = name, url: str = url, protocol: str = protocol
                    ) -> RequestFn:
                        return TritonCall(protocol, url, name, x)

                    closed_loop(name, requests, args.concurrency, 0.0, args.warmup_s)
                    if use_pa:
                        point = perf_analyzer(
                            name, name, url, protocol, args.concurrency, args.duration_s,
                            WORK_DIR / "perf_analyzer", readers,
                        )  # fmt: skip
                    else:
                        point = closed_loop(
                            name, requests, args.concurrency, 0.0, args.duration_s,
                            {**readers, "client": process_cpu_seconds},
                        )  # fmt: skip
                    points.append((protocol, name, point))
                    print(f"{protocol} {name}: {point.infer_per_s:.0f} infer/s", flush=True)
    text = render(args, raw, points, use_pa)
    print(text)
    if not args.smoke:
        RESULTS.write_text(text)
    return 0


def render(
    args: argparse.Namespace, raw: Measurement, points: list[tuple[str, str, Measurement]], pa: bool
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Dynamic batching: ONNX MLP, batch-1 requests at concurrency {args.concurrency}",
        "",
        f"- Date: {now}; machine: {machine()}",
        f"- Load generator: {'perf_analyzer' if pa else 'Python closed loop'}; "
        f"windows of {args.duration_s} s",
        "- Baseline: raw in-process ONNX Runtime, default session options, batch 1, one caller: "
        f"{raw.infer_per_s:.0f} infer/s",
        "- Reproduce: `.venv/bin/python benchmarks/bench_batching.py`",
        "",
        "| protocol | model | infer/s | p50 (us) | p99 (us) | / raw batch-1 | p99 batched / unbatched | CPU |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    by_key = {(p, n): m for p, n, m in points}
    for protocol, name, point in points:
        p99_ratio = ""
        if name == "mlp_batched" and (protocol, "mlp_unbatched") in by_key:
            p99_ratio = f"{point.p99_us / max(1.0, by_key[(protocol, 'mlp_unbatched')].p99_us):.2f}"
        lines.append(
            f"| {protocol} | {name} | {point.infer_per_s:.0f} | {point.p50_us:.0f} | "
            f"{point.p99_us:.0f} | {point.infer_per_s / raw.infer_per_s:.2f} | {p99_ratio} | "
            f"{cpu_text(point)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
