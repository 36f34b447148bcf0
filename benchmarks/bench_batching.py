"""Dynamic batching benchmark: the ONNX MLP at concurrency 32, with and without the batcher.

In one run it measures raw in-process ONNX Runtime at batch 1 (the baseline) and Naiad
serving the same model twice, once without ``dynamic_batching`` and once with it, then
prints throughput ratios against raw batch-1 and the p99 of batching against no batching.
It uses the real perf_analyzer when installed (``benchmarks/.work/peers``, see
``bench_onnx.py --perf-analyzer``), else the Python closed-loop generator.

The same two configurations for a python backend (``MLP_MODEL_PY``, ONNX Runtime called from
``model.py``) are how ``bench_suite.py`` serves the MLP with the real Triton, whose build here
has no ONNX Runtime backend.

Reproduce: ``.venv/bin/python benchmarks/bench_batching.py`` (``--smoke`` for a quick check).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_onnx import (
    SIZES,
    Recorder,
    check_output,
    cpu_text,
    default_session,
    machine,
    ort_point,
    steady,
)
from bench_python import TritonProcess, server_cpu_readers
from loadgen import Measurement, perf_analyzer_installed, server_point
from naiad.examples import onnx_models
from naiad_process import NaiadProcess

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "dynamic_batching.md"
WORK_DIR = BENCH_DIR / ".work" / "batching"

CONFIG = """
name: "{name}"
backend: "{backend}"
max_batch_size: 32
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {width} ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {classes} ] }} ]
instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
{batching}
"""
MODELS = {
    "mlp_unbatched": "",
    # No added delay: batches form from what queues while the instance is busy.
    "mlp_batched": "dynamic_batching { max_queue_delay_microseconds: 0 }",
}

# The MLP for a python backend (the real Triton serves ONNX no other way): ONNX Runtime from
# model.py. Without a dynamic batcher ``execute`` gets one request, so one ORT run each, as
# Naiad's ORT backend does; under the batcher the queued requests' rows go through one ORT
# run and the output is split back.
MLP_MODEL_PY = """\
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        # The session options of Naiad's ORT backend (all cores but one, intra-op threads
        # that sleep when idle), so both servers run the model alike and the difference is
        # the serving.
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, (os.cpu_count() or 1) - 1)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        (output,) = self.session.run(["OUTPUT0"], {"INPUT0": batch})
        responses, start = [], 0
        for x in inputs:
            rows = output[start : start + len(x)]
            start += len(x)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", rows)]))
        return responses
"""


def write_repository(root: Path, model: bytes, backend: str) -> Path:
    """``mlp_unbatched`` and ``mlp_batched`` for ``backend`` "onnxruntime" or "python"."""
    for name, batching in MODELS.items():
        version = root / name / "1"
        version.mkdir(parents=True)
        (version / "model.onnx").write_bytes(model)
        if backend == "python":
            (version / "model.py").write_text(MLP_MODEL_PY)
        (root / name / "config.pbtxt").write_text(
            CONFIG.format(
                name=name, backend=backend, width=SIZES[0], classes=SIZES[-1], batching=batching
            )
        )
    return root


def measure_mlp(
    label: str,
    server: NaiadProcess | TritonProcess,
    x: np.ndarray,
    expected: np.ndarray,
    concurrency: list[int],
    protocols: list[str],
    *,
    warmup_s: float,
    duration_s: float,
    use_perf_analyzer: bool,
    retries: int,
    workdir: Path,
) -> dict[tuple[str, str], list[Measurement]]:
    """Every point of both models on a running server: (model, protocol) -> points.

    Each model's answer is checked against raw ORT's first. Still-disturbed points get
    their later attempt before this returns (the server must still run).
    """
    readers = server_cpu_readers(server)
    recorder = Recorder(retries)
    points: dict[tuple[str, str], list[Measurement]] = {}
    for protocol in protocols:
        url = server.http_url if protocol == "http" else server.grpc_url
        for name in MODELS:
            check_output(protocol, url, x, expected, name)
            series = points.setdefault((name, protocol), [])
            for clients in concurrency:
                measure = server_point(
                    f"{label} {name} {protocol}", name, protocol, url, x, clients, readers,
                    warmup_s=warmup_s, duration_s=duration_s,
                    use_perf_analyzer=use_perf_analyzer, workdir=workdir / name,
                )  # fmt: skip
                recorder.record(series, measure)
    recorder.retry_late()
    return points


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
    (expected,) = default_session(model).run(["OUTPUT0"], {"INPUT0": x})

    name = "raw ORT batch 1"
    raw = steady(
        ort_point(name, lambda: default_session(model), x, 1, args.warmup_s, args.duration_s), 1
    )
    with tempfile.TemporaryDirectory(prefix="naiad-batching-") as tmp:
        root = write_repository(Path(tmp), model, "onnxruntime")
        with NaiadProcess(root, log_path=WORK_DIR / "naiad.log") as server:
            measured = measure_mlp(
                "naiad", server, x, expected, [args.concurrency], args.protocol,
                warmup_s=args.warmup_s, duration_s=args.duration_s, use_perf_analyzer=use_pa,
                retries=0, workdir=WORK_DIR / "perf_analyzer",
            )  # fmt: skip
    points = [(protocol, name, series[0]) for (name, protocol), series in measured.items()]
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
