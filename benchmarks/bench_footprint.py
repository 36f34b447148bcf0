"""Benchmark: Naiad's footprint and transfer cost, issue 10's scenarios (c), (d) and (e).

- (c) start to ready: ``naiad serve`` with no ``--model-repository`` (the bundled example
  repository), from just before the process is spawned to the first ``/v2/health/ready`` 200.
  The first start runs with an empty ``XDG_CACHE_HOME`` and generates the cached example
  repository (reported apart); the next starts reuse the cache (best and median).
- (d) RSS of the server's process tree (psutil): idle after ready, and the peak while 8 clients
  (4 HTTP, 4 gRPC, binary tensors) send batch-1 requests to the example ``mlp``.
- (e) transfer cost: a BYTES tensor (1,000 strings of 100 bytes) and a 16 MiB FP32 tensor sent
  through ONNX ``Identity`` models, one request at a time, over HTTP (binary) and gRPC, against
  a plain ``grpc.aio`` echo service (generic bytes -> bytes unary method, no protobuf) in its own
  process, carrying the same payload bytes.

Writes ``benchmarks/results/footprint.md`` and ``benchmarks/results/footprint.png``.

    python benchmarks/bench_footprint.py [--starts 5] [--load-s 5] [--transfer-s 4] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import psutil
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import serialize_byte_tensor

from bench_onnx import load_average, machine
from loadgen import Measurement, RequestFn, closed_loop
from naiad import __version__ as naiad_version
from naiad.examples import onnx_models
from naiad_process import NaiadProcess
from targets import Target, target_table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "results" / "footprint.md"
WORK_DIR = BENCH_DIR / ".work"
MIB = 2**20

# Issue 10's targets.
TARGET_READY_S = 1.0
TARGET_IDLE_RSS_MB = 150.0
TARGET_ECHO_RATIO = 2.0

TRANSPORTS = ("naiad http", "naiad grpc", "naiad grpc raw", "grpcio echo")
ECHO_METHOD = "/bench.Echo/Echo"
GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def identity_config(name: str, datatype: str) -> str:
    return f"""\
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_{datatype} dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_{datatype} dims: [ -1 ] }} ]
"""


@dataclass(frozen=True, slots=True)
class Payload:
    label: str
    model: str
    datatype: str  # Triton name: FP32 or BYTES
    array: np.ndarray

    @property
    def wire_bytes(self) -> bytes:
        """What the tensor is on the wire (raw little-endian, or length-prefixed strings)."""
        if self.datatype == "BYTES":
            # tritonclient returns a 0-d object array holding the serialized bytes.
            return bytes(serialize_byte_tensor(self.array).item())
        return self.array.tobytes()


def payloads(smoke: bool) -> list[Payload]:
    rng = np.random.default_rng(0)
    letters = rng.integers(ord("a"), ord("z") + 1, size=(1000, 100), dtype=np.uint8)
    strings = np.array([row.tobytes() for row in letters], dtype=np.object_)
    floats = rng.standard_normal((1 if smoke else 16) * MIB // 4, dtype=np.float32)
    size = "1 MiB" if smoke else "16 MiB"
    return [
        Payload("BYTES 1,000 x 100 B", "identity_bytes", "BYTES", strings),
        Payload(f"FP32 {size}", "identity_fp32", "FP32", floats),
    ]


def write_identity_repository(root: Path) -> Path:
    for name, datatype, onnx_type in (
        ("identity_fp32", "FP32", "FP32"),
        ("identity_bytes", "STRING", "BYTES"),
    ):
        (root / name / "1").mkdir(parents=True)
        model = onnx_models.identity(onnx_type, [-1], batch=False)
        (root / name / "1" / "model.onnx").write_bytes(model)
        (root / name / "config.pbtxt").write_text(identity_config(name, datatype))
    return root


# --- (c) start to ready ------------------------------------------------------------------------


class ExampleServer(NaiadProcess):
    """``naiad serve`` with no repository (the example one), with its own cache dir.

    Readiness is polled every 5 ms (the parent's 50 ms would blur a sub-second start).
    """

    def __init__(self, cache_home: Path, log_path: Path | None = None) -> None:
        super().__init__(
            None,
            log_path=log_path,
            env={"XDG_CACHE_HOME": str(cache_home)},
            poll_interval_s=0.005,
        )
        self.cache_home = cache_home


# --- (d) RSS -----------------------------------------------------------------------------------


def tree_rss(pid: int) -> tuple[int, int]:
    """RSS bytes of ``pid`` plus its live descendants, and how many processes that is."""
    root = psutil.Process(pid)
    total, count = 0, 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
            count += 1
        except psutil.NoSuchProcess:
            pass
    return total, count


def heavy_libraries(pid: int) -> list[str]:
    """Which of torch / tensorflow the server has mapped (the idle RSS target excludes them)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in ("torch", "tensorflow") if f"/{name}/" in maps]


class MlpCall:
    """One tritonclient with a pre-built batch-1 request to the example ``mlp``."""

    def __init__(self, protocol: str, url: str, x: np.ndarray) -> None:
        module = httpclient if protocol == "http" else grpcclient
        self._client = module.InferenceServerClient(url)
        tensor = module.InferInput("INPUT0", list(x.shape), "FP32")
        if protocol == "http":
            tensor.set_data_from_numpy(x, binary_data=True)
            self._outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)]
        else:
            tensor.set_data_from_numpy(x)
            self._outputs = [grpcclient.InferRequestedOutput("OUTPUT0")]
        self._inputs = [tensor]

    def __call__(self) -> object:
        return self._client.infer("mlp", self._inputs, outputs=self._outputs)

    def close(self) -> None:
        self._client.close()


def rss_under_load(
    server: NaiadProcess, clients: int, warmup_s: float, duration_s: float
) -> tuple[int, Measurement]:
    """Peak tree RSS (sampled every 20 ms) while ``clients`` threads load the ``mlp``."""
    x = np.random.default_rng(1).standard_normal((1, 256), dtype=np.float32)
    made = iter(range(clients))

    def make() -> RequestFn:
        index = next(made)
        if index % 2:
            return MlpCall("grpc", server.grpc_url, x)
        return MlpCall("http", server.http_url, x)

    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(server.pid)[0])
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        point = closed_loop("mlp 4 http + 4 grpc", make, clients, warmup_s, duration_s)
    finally:
        stop.set()
        sampler.join()
    return peak, point


# --- (e) transfer ------------------------------------------------------------------------------


class IdentityCall:
    def __init__(self, protocol: str, url: str, payload: Payload) -> None:
        module = httpclient if protocol == "http" else grpcclient
        self.protocol = protocol
        self.model = payload.model
        if protocol == "http":
            self._client = httpclient.InferenceServerClient(
                url, connection_timeout=120, network_timeout=120
            )
        else:
            self._client = grpcclient.InferenceServerClient(url)
        tensor = module.InferInput("INPUT0", list(payload.array.shape), payload.datatype)
        if protocol == "http":
            tensor.set_data_from_numpy(payload.array, binary_data=True)
            self._outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)]
        else:
            tensor.set_data_from_numpy(payload.array)
            self._outputs = [grpcclient.InferRequestedOutput("OUTPUT0")]
        self._inputs = [tensor]

    def __call__(self) -> object:
        return self._client.infer(self.model, self._inputs, outputs=self._outputs)

    def close(self) -> None:
        self._client.close()


class EchoCall:
    def __init__(self, url: str, data: bytes) -> None:
        self._channel = grpc.insecure_channel(url, options=GRPC_OPTIONS)
        # No serializers: bytes go out and come back as they are.
        self._call = self._channel.unary_unary(ECHO_METHOD)
        self._data = data

    def __call__(self) -> object:
        reply = self._call(self._data)
        if len(reply) != len(self._data):
            raise RuntimeError(f"echo returned {len(reply)} bytes, sent {len(self._data)}")
        return reply

    def close(self) -> None:
        self._channel.close()


class RawInferCall(EchoCall):
    """Naiad's gRPC ``ModelInfer`` sent as pre-serialized bytes, reply left unparsed.

    The same channel code as the echo client, so the difference from echo is the server's
    work (parse, run Identity, build the reply), without tritonclient's per-call copies.
    """

    def __init__(self, url: str, payload: Payload) -> None:
        from tritonclient.grpc import service_pb2

        request = service_pb2.ModelInferRequest(model_name=payload.model)
        tensor = request.inputs.add(name="INPUT0", datatype=payload.datatype)
        tensor.shape.extend(payload.array.shape)
        request.outputs.add(name="OUTPUT0")
        request.raw_input_contents.append(payload.wire_bytes)
        data = request.SerializeToString()
        super().__init__(url, data)
        self._call = self._channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        self._minimum = len(payload.wire_bytes)

    def __call__(self) -> object:
        reply = self._call(self._data)
        if len(reply) < self._minimum:
            raise RuntimeError(f"ModelInfer reply of {len(reply)} bytes, under the tensor's")
        return reply


def check_identity(protocol: str, url: str, payload: Payload) -> None:
    call = IdentityCall(protocol, url, payload)
    try:
        got = call().as_numpy("OUTPUT0")  # type: ignore[attr-defined]
    finally:
        call.close()
    if got is None or got.shape != payload.array.shape or not np.array_equal(got, payload.array):
        raise RuntimeError(f"{payload.model} over {protocol} did not return its input")


async def _serve_echo() -> None:
    server = grpc.aio.server(options=GRPC_OPTIONS)

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=None, response_serializer=None
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"echo listening on {port}", flush=True)
    await server.wait_for_termination()


class EchoProcess:
    """The echo service in its own process, like the server it is compared with."""

    def __enter__(self) -> EchoProcess:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-echo"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("echo listening on "):
            self.process.kill()
            raise RuntimeError(f"echo server did not start: {line!r}")
        self.url = f"127.0.0.1:{int(line.rsplit(' ', 1)[1])}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# --- the run -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    cold_ready_s: float = 0.0
    warm_ready_s: list[float] = field(default_factory=list)
    # A bare interpreter importing the modules `naiad serve` imports before it loads models.
    import_s: list[float] = field(default_factory=list)
    idle_rss: int = 0
    idle_processes: int = 0
    ready_rss: int = 0
    peak_rss: int = 0
    after_rss: int = 0
    heavy: list[str] = field(default_factory=list)
    load: Measurement | None = None
    # (payload label, transport) -> measurement
    transfer: dict[tuple[str, str], Measurement] = field(default_factory=dict)
    payload_sizes: dict[str, int] = field(default_factory=dict)


def import_seconds() -> float:
    """Wall time of a fresh interpreter importing what ``naiad serve`` imports before it
    loads a model: the part of start-up that is Python's imports, not Naiad's work."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import naiad.cli, naiad.server"], check=True)
    return time.monotonic() - started


@dataclass(frozen=True, slots=True)
class Plan:
    starts: int
    clients: int
    load_s: float
    transfer_s: float
    warmup_s: float
    smoke: bool


def run(plan: Plan) -> Results:
    results = Results()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="naiad-footprint-") as tmp:
        cache_home = Path(tmp) / "cache"
        cache_home.mkdir()
        print("(c) start to ready, example repository, empty cache", flush=True)
        with ExampleServer(cache_home) as server:
            assert server.ready_s is not None
            results.cold_ready_s = server.ready_s
        print(f"  cold start (generates the cache): {results.cold_ready_s:.3f} s", flush=True)
        for index in range(plan.starts):
            server = ExampleServer(cache_home, log_path=WORK_DIR / "naiad-footprint-server.log")
            server.start()
            assert server.ready_s is not None
            results.warm_ready_s.append(server.ready_s)
            print(f"  start {index + 1}: {server.ready_s:.3f} s", flush=True)
            if index < plan.starts - 1:
                server.stop()
                continue
            try:
                # (d) on the last start: idle RSS, then under load.
                results.ready_rss = tree_rss(server.pid)[0]
                time.sleep(1.0 if plan.smoke else 3.0)
                results.idle_rss, results.idle_processes = tree_rss(server.pid)
                results.heavy = heavy_libraries(server.pid)
                print(
                    f"(d) idle RSS {results.idle_rss / 1e6:.1f} MB "
                    f"({results.idle_processes} process(es)); loading mlp ...",
                    flush=True,
                )
                results.peak_rss, results.load = rss_under_load(
                    server, plan.clients, plan.warmup_s, plan.load_s
                )
                time.sleep(1.0)
                results.after_rss = tree_rss(server.pid)[0]
                print(
                    f"  peak RSS under load {results.peak_rss / 1e6:.1f} MB, "
                    f"{results.load.infer_per_s:.0f} infer/s; after {results.after_rss / 1e6:.1f} MB",
                    flush=True,
                )
            finally:
                server.stop()

        results.import_s = [import_seconds() for _ in range(3)]
        print(f"  importing the server's modules: {results.import_s}", flush=True)

        print("(e) transfer cost through ONNX Identity models", flush=True)
        repo = write_identity_repository(Path(tmp) / "identity")
        cases = payloads(plan.smoke)
        with NaiadProcess(repo, log_path=WORK_DIR / "naiad-footprint-identity.log") as naiad:
            for payload in cases:
                results.payload_sizes[payload.label] = len(payload.wire_bytes)
                for protocol, url in (("http", naiad.http_url), ("grpc", naiad.grpc_url)):
                    check_identity(protocol, url, payload)
                    results.transfer[(payload.label, f"naiad {protocol}")] = _transfer_point(
                        f"naiad {protocol}",
                        lambda p=protocol, u=url, pl=payload: IdentityCall(p, u, pl),
                        plan,
                        payload.label,
                    )
                results.transfer[(payload.label, "naiad grpc raw")] = _transfer_point(
                    "naiad grpc raw",
                    lambda u=naiad.grpc_url, pl=payload: RawInferCall(u, pl),
                    plan,
                    payload.label,
                )
        with EchoProcess() as echo:
            for payload in cases:
                data = payload.wire_bytes
                results.transfer[(payload.label, "grpcio echo")] = _transfer_point(
                    "grpcio echo", lambda d=data: EchoCall(echo.url, d), plan, payload.label
                )
    return results


def _transfer_point(
    name: str, make: Callable[[], RequestFn], plan: Plan, label: str
) -> Measurement:
    point = closed_loop(name, make, 1, plan.warmup_s, plan.transfer_s)
    print(
        f"  {label:22s} {name:12s} p50 {point.p50_us / 1e3:8.2f} ms  "
        f"p99 {point.p99_us / 1e3:8.2f} ms  ({point.requests} requests)",
        flush=True,
    )
    return point


# --- report ------------------------------------------------------------------------------------


def versions() -> str:
    names = ["onnxruntime", "numpy", "tritonclient", "grpcio", "psutil"]
    parts = [f"naiad {naiad_version}", f"Python {platform.python_version()}"]
    parts += [f"{name} {importlib.metadata.version(name)}" for name in names]
    return ", ".join(parts)


def targets(results: Results) -> list[Target]:
    """Issue 10's targets for (c), (d) and (e); the transfer one is judged on the p50."""
    warm = results.warm_ready_s
    best, median = min(warm), statistics.median(warm)
    idle_mb = results.idle_rss / 1e6
    big = next(label for label in results.payload_sizes if label.startswith("FP32"))
    echo_big = results.transfer[(big, "grpcio echo")]
    grpc_big = results.transfer[(big, "naiad grpc")]
    ratio_p50 = grpc_big.p50_us / echo_big.p50_us
    ratio_p99 = grpc_big.p99_us / echo_big.p99_us
    ratio_raw = results.transfer[(big, "naiad grpc raw")].p50_us / echo_big.p50_us
    heavy = ", ".join(results.heavy) if results.heavy else "neither loaded"
    return [
        Target(
            f"start to ready <= {TARGET_READY_S:.0f} s (example repository, cache present)",
            f"best {best:.3f} s, median {median:.3f} s",
            median <= TARGET_READY_S,
            "" if median <= TARGET_READY_S else _ready_why(results, median),
        ),
        Target(
            f"idle RSS <= {TARGET_IDLE_RSS_MB:.0f} MB without torch/tensorflow",
            f"{idle_mb:.1f} MB ({heavy})",
            idle_mb <= TARGET_IDLE_RSS_MB,
        ),
        Target(
            f"16 MiB FP32 gRPC round trip <= {TARGET_ECHO_RATIO:.0f}x grpcio echo (p50)",
            f"{big}: p50 {ratio_p50:.2f}x, p99 {ratio_p99:.2f}x (tritonclient); "
            f"p50 {ratio_raw:.2f}x (pre-serialized request)",
            ratio_p50 <= TARGET_ECHO_RATIO,
            ""
            if ratio_p50 <= TARGET_ECHO_RATIO
            else (
                f"with the request serialized once beforehand, as the echo's client does, "
                f"Naiad's round trip is {ratio_raw:.2f}x the echo's: the rest "
                f"({(grpc_big.p50_us - results.transfer[(big, 'naiad grpc raw')].p50_us) / 1e3:.0f}"
                " ms at p50) is tritonclient building the 16 MiB request and reading the reply "
                "in the client process"
            ),
        ),
    ]


def _ready_why(results: Results, median: float) -> str:
    if not results.import_s:
        return ""
    imports = statistics.median(results.import_s)
    return (
        f"a fresh interpreter importing the server's modules (numpy, grpc, uvicorn, "
        f"prometheus-client, protobuf) took {imports:.2f} s of the {median:.2f} s in this run "
        f"(median of {len(results.import_s)}); loading the models and opening the listeners "
        "take the rest"
    )


def render(plan: Plan, results: Results, command: str, started: datetime.datetime) -> str:
    lines = [
        "# Naiad footprint and transfer cost (issue 10, scenarios c, d, e)",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Load average (1, 5, 15 min) at the end: {load_average()}",
        f"- Versions: {versions()}",
        f"- Command: `{command}`",
        "",
        "## Targets",
        "",
        *target_table(targets(results)),
        "",
        *sections(plan, results, "##"),
        "![transfer latency](footprint.png)",
        "",
    ]
    return "\n".join(lines)


def sections(plan: Plan, results: Results, heading: str) -> list[str]:
    """The (c), (d) and (e) sections, under headings of level ``heading`` ("##", "###")."""
    warm = results.warm_ready_s
    best, median = min(warm), statistics.median(warm)
    idle_mb = results.idle_rss / 1e6
    assert results.load is not None
    lines = [
        f"{heading} (c) Start to ready",
        "",
        "`naiad serve --http-port=0 --grpc-port=0 --allow-metrics=false` with no "
        "`--model-repository`, from just before the spawn to the first `/v2/health/ready` "
        "200 (polled every 5 ms). Each start has `XDG_CACHE_HOME` pointing at the same "
        "fresh temporary directory; the first start finds it empty and generates the example "
        "repository.",
        "",
        "| start | seconds |",
        "|---|---|",
        f"| first (generates the cache) | {results.cold_ready_s:.3f} |",
        *(f"| cached {i + 1} | {s:.3f} |" for i, s in enumerate(warm)),
        f"| cached, best | {best:.3f} |",
        f"| cached, median | {median:.3f} |",
        "",
        f"{heading} (d) RSS, example repository",
        "",
        "Resident set of the server process plus its children (psutil; "
        f"{results.idle_processes} process(es) at idle). Load: {plan.clients} closed-loop "
        "clients (half `tritonclient.http`, half `tritonclient.grpc`, binary tensors) sending "
        f"batch-1 requests to `mlp` for {plan.load_s:g} s after a {plan.warmup_s:g} s warm-up; "
        "RSS sampled every 20 ms over warm-up and window.",
        "",
        "| when | RSS (MB) |",
        "|---|---|",
        f"| right at ready | {results.ready_rss / 1e6:.1f} |",
        f"| idle, {1 if plan.smoke else 3} s after ready | {idle_mb:.1f} |",
        f"| peak under load ({results.load.infer_per_s:.0f} infer/s, "
        f"p99 {results.load.p99_us / 1e3:.2f} ms) | {results.peak_rss / 1e6:.1f} |",
        f"| 1 s after the load | {results.after_rss / 1e6:.1f} |",
        "",
        f"{heading} (e) Transfer cost",
        "",
        "One request at a time (concurrency 1) for "
        f"{plan.transfer_s:g} s after a {plan.warmup_s:g} s warm-up, through ONNX `Identity` "
        "models (`max_batch_size: 0`, dims `[-1]`). HTTP uses binary tensor data both ways; "
        "gRPC uses `raw_input_contents` (tritonclient's default). The echo service is a "
        "`grpc.aio` server in its own process with one generic unary method and no "
        "(de)serializers, sent the same bytes the tensor has on the wire. Client-side costs "
        "(tritonclient building and parsing messages) are included in Naiad's numbers, as a "
        "user would see them. `naiad grpc raw` sends Naiad a pre-serialized `ModelInferRequest` "
        "through the echo client's code and leaves the reply unparsed: it takes tritonclient's "
        "per-call copies out, leaving the server's share.",
        "",
        "| payload | wire bytes | transport | p50 (ms) | p99 (ms) | requests | p50 / echo |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, size in results.payload_sizes.items():
        echo = results.transfer[(label, "grpcio echo")]
        for transport in TRANSPORTS:
            point = results.transfer[(label, transport)]
            lines.append(
                f"| {label} | {size:,} | {transport} | {point.p50_us / 1e3:.2f} "
                f"| {point.p99_us / 1e3:.2f} | {point.requests} "
                f"| {point.p50_us / echo.p50_us:.2f}x |"
            )
    lines += [
        "",
        "p99 over a few hundred requests is close to the maximum: read it as a tail hint.",
        "",
    ]
    return lines


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results.payload_sizes)
    transports = list(TRANSPORTS)
    fig, axes = plt.subplots(1, len(labels), figsize=(6 * len(labels), 4))
    for ax, label in zip(np.atleast_1d(axes), labels, strict=True):
        xs = np.arange(len(transports))
        p50 = [results.transfer[(label, t)].p50_us / 1e3 for t in transports]
        p99 = [results.transfer[(label, t)].p99_us / 1e3 for t in transports]
        ax.bar(xs - 0.2, p50, 0.4, label="p50")
        ax.bar(xs + 0.2, p99, 0.4, label="p99")
        ax.set_xticks(xs, transports)
        ax.set_ylabel("round trip (ms)")
        ax.set_title(label)
        ax.legend()
    fig.suptitle("Naiad transfer cost vs grpcio echo (concurrency 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5, help="cached starts to time (5)")
    parser.add_argument("--clients", type=int, default=8, help="load clients for (d) (8)")
    parser.add_argument("--load-s", type=float, default=5.0, help="load window for (d) (5 s)")
    parser.add_argument("--transfer-s", type=float, default=4.0, help="window per (e) point")
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    parser.add_argument("--smoke", action="store_true", help="harness check, writes nothing")
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_echo:
        asyncio.run(_serve_echo())
        return 0
    if args.smoke:
        plan = Plan(2, 4, 1.0, 0.5, 0.3, smoke=True)
    else:
        plan = Plan(args.starts, args.clients, args.load_s, args.transfer_s, args.warmup_s, False)
    command = shlex.join([".venv/bin/python", "benchmarks/bench_footprint.py", *sys.argv[1:]])
    started = datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    results = run(plan)
    print(f"benchmark took {time.monotonic() - began:.1f} s", flush=True)
    report = render(plan, results, command, started)
    print()
    print(report)
    if not plan.smoke:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
        png = args.output.with_suffix(".png")
        plot(results, png)
        print(f"wrote {args.output} and {png}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            plot(results, Path(tmp) / "footprint.png")  # the plot code runs, nothing is kept
    return 0


if __name__ == "__main__":
    sys.exit(main())
