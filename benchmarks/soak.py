"""Soak: many clients mixing valid and bad requests against one server; memory must stay flat.

32 client threads (by default) each loop for the whole duration, picking a request at
random: valid inferences over HTTP and gRPC (inline tensors, the binary extension, and
system shared memory), and bad ones from the attack list (malformed JSON, deep JSON, a
gzip bomb, 70,000 chunks, oversized headers, huge declared sizes, shared memory out of
bounds, unknown models, duplicate outputs). A valid request passes only with the exact
expected result; a bad one only with a 4xx / gRPC client error and the server still up.
The server's RSS and open descriptors are sampled every second.

Pass criteria (exit status 0): zero failed valid requests, zero bad requests answered
with anything but a client error, and RSS growth after the warm-up under 32 MiB.

    .venv/bin/python benchmarks/soak.py --duration-s 600             # the full soak
    .venv/bin/python benchmarks/soak.py --duration-s 180 --output benchmarks/results/soak.md
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import gzip
import http.client
import json
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import psutil
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from naiad_process import NaiadProcess

MIB = 1024 * 1024
SHM_PREFIX = "naiad_soak_"
A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.full((1, 16), 3, dtype=np.int32)


def write_repository(root: Path) -> Path:
    from naiad.examples import onnx_models

    model = root / "simple"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(onnx_models.add_sub("INT32"))
    (model / "config.pbtxt").write_text(
        """
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
        { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
         { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
"""
    )
    return root


class Failure(Exception):
    """A request did not get the answer it must get."""


@dataclass
class Client:
    """One client thread's connections and its own shared memory segment."""

    http_url: str
    grpc_url: str
    index: int
    http: httpclient.InferenceServerClient = field(init=False)
    grpc: grpcclient.InferenceServerClient = field(init=False)
    segment: shared_memory.SharedMemory = field(init=False)
    region: str = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpclient.InferenceServerClient(self.http_url, connection_timeout=60)
        self.grpc = grpcclient.InferenceServerClient(self.grpc_url)
        key = f"{SHM_PREFIX}{uuid.uuid4().hex[:8]}_{self.index}"
        self.segment = shared_memory.SharedMemory(key, create=True, size=4 * A.nbytes)
        self.segment.buf[: 2 * A.nbytes] = A.tobytes() + B.tobytes()
        self.region = f"soak{self.index}"
        self.http.register_system_shared_memory(self.region, f"/{key}", 4 * A.nbytes)

    def close(self) -> None:
        self.http.unregister_system_shared_memory(self.region)
        self.http.close()
        self.grpc.close()
        self.segment.close()
        self.segment.unlink()


def _check(result: np.ndarray | None, expected: np.ndarray) -> None:
    if result is None or not np.array_equal(result, expected):
        raise Failure(f"wrong result: {result!r}")


# -- valid requests -------------------------------------------------------------------


def valid_http(client: Client) -> None:
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(A, binary_data=random.random() < 0.5)
    inputs[1].set_data_from_numpy(B)
    result = client.http.infer("simple", inputs)
    _check(result.as_numpy("OUTPUT0"), A + B)
    _check(result.as_numpy("OUTPUT1"), A - B)


def valid_grpc(client: Client) -> None:
    inputs = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(A)
    inputs[1].set_data_from_numpy(B)
    result = client.grpc.infer("simple", inputs)
    _check(result.as_numpy("OUTPUT0"), A + B)


def valid_shm(client: Client) -> None:
    module = random.choice((httpclient, grpcclient))
    target = client.http if module is httpclient else client.grpc
    size = A.nbytes
    inputs = [module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_shared_memory(client.region, size)
    inputs[1].set_shared_memory(client.region, size, offset=size)
    output = module.InferRequestedOutput("OUTPUT0")
    output.set_shared_memory(client.region, size, offset=2 * size)
    client.segment.buf[2 * size : 3 * size] = bytes(size)
    target.infer("simple", inputs, outputs=[output])
    got = np.frombuffer(bytes(client.segment.buf[2 * size : 3 * size]), dtype=np.int32)
    _check(got.reshape(1, 16), A + B)


VALID: list[Callable[[Client], None]] = [valid_http, valid_grpc, valid_shm]

# -- bad requests: each must get a client error ---------------------------------------


def _post(client: Client, path: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    connection = http.client.HTTPConnection(client.http_url, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    if not 400 <= response.status < 500 and response.status != 501:
        raise Failure(f"{path}: expected a client error, got {response.status}")


def _raw(client: Client, data: bytes, expect: bytes) -> None:
    host, port = client.http_url.split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    if not response.startswith(expect):
        raise Failure(f"raw request: expected {expect!r}, got {response[:80]!r}")


_INFER = "/v2/models/simple/infer"
_BOMB = gzip.compress(b"\0" * (70 * MIB), compresslevel=9)
_DEEP = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
_DUPLICATES = json.dumps(
    {
        "inputs": [
            {"name": n, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
            for n in ("INPUT0", "INPUT1")
        ],
        "outputs": [{"name": "OUTPUT0"}] * 20_000,
    }
).encode()
_CHUNKS = (
    b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"1\r\nA\r\n" * 70_000
    + b"0\r\n\r\n"
)
_BIG_HEADER = b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"


def _bad_grpc(client: Client) -> None:
    inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(A)
    inputs[0]._input.shape[:] = [2**40, 16]  # claim far more than is sent
    try:
        client.grpc.infer("simple", inputs)
    except InferenceServerException as exc:
        if exc.status() != "StatusCode.INVALID_ARGUMENT":
            raise Failure(f"gRPC: expected INVALID_ARGUMENT, got {exc.status()}") from None
        return
    raise Failure("gRPC: a bad request succeeded")


def _bad_shm(client: Client) -> None:
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_shared_memory(client.region, A.nbytes, offset=4 * A.nbytes)
    inputs[1].set_shared_memory(client.region, 2**64 - 1, offset=8)
    try:
        client.http.infer("simple", inputs)
    except InferenceServerException as exc:
        if "Invalid offset" not in exc.message():
            raise Failure(f"shm: unexpected error {exc.message()}") from None
        return
    raise Failure("shm: out-of-bounds request succeeded")


BAD: list[Callable[[Client], None]] = [
    lambda c: _post(c, _INFER, b"{not json"),
    lambda c: _post(c, _INFER, _DEEP),
    lambda c: _post(c, _INFER, _BOMB, {"Content-Encoding": "gzip"}),
    lambda c: _post(c, _INFER, b"{}", {"Inference-Header-Content-Length": "99999"}),
    lambda c: _post(c, _INFER, _DUPLICATES),
    lambda c: _post(c, "/v2/models/a;touch%20%2Ftmp%2Fpwn/infer", b"{}"),
    lambda c: _post(c, "/v2/logging", b'{"log_file": "/tmp/naiad-soak.log"}'),
    lambda c: _post(
        c, "/v2/systemsharedmemory/region/x/register", b'{"key": "/etc", "byte_size": 8}'
    ),
    lambda c: _raw(c, _CHUNKS, b"HTTP/1.1 400"),
    lambda c: _raw(c, _BIG_HEADER, b"HTTP/1.1 431"),
    lambda c: _raw(
        c,
        b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2147483648\r\n\r\n{}",
        b"HTTP/1.1 400",
    ),
    _bad_grpc,
    _bad_shm,
]


@dataclass
class Tally:
    valid: int = 0
    valid_failed: int = 0
    bad: int = 0
    bad_failed: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, valid: bool, failure: str | None) -> None:
        with self.lock:
            if valid:
                self.valid += 1
                self.valid_failed += failure is not None
            else:
                self.bad += 1
                self.bad_failed += failure is not None
            if failure is not None:
                self.errors[failure[:160]] += 1


def run_client(
    urls: tuple[str, str],
    index: int,
    ready: threading.Barrier,
    stop: threading.Event,
    tally: Tally,
    bad_share: float,
) -> None:
    # tritonclient's HTTP client is gevent-based: made, used and closed on this thread.
    client = Client(urls[0], urls[1], index)
    rng = random.Random(index)
    ready.wait()
    try:
        while not stop.is_set():
            valid = rng.random() >= bad_share
            action = rng.choice(VALID if valid else BAD)
            failure = None
            try:
                action(client)
            except Failure as exc:
                failure = str(exc)
            except Exception as exc:  # a valid request that raised, or a transport failure
                failure = f"{type(exc).__name__}: {exc}"
            tally.add(valid, failure)
    finally:
        client.close()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument(
        "--warmup-s", type=float, default=None, help="default: 10%% of the run, at least 20 s"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--bad-share", type=float, default=0.3, help="share of bad requests")
    parser.add_argument("--max-growth-mib", type=float, default=32.0)
    parser.add_argument("--output", type=Path, help="write the Markdown report here too")
    args = parser.parse_args(argv)
    warmup_s = args.warmup_s if args.warmup_s is not None else max(20.0, args.duration_s / 10)

    work = Path(tempfile.mkdtemp(prefix="naiad-soak-"))
    repository = write_repository(work / "repository")
    server_args = ["--allow-client-shm=true", f"--shm-key-prefix={SHM_PREFIX}", "--log-verbose=0"]
    tally = Tally()
    samples: list[tuple[float, int, int]] = []
    with NaiadProcess(repository, *server_args, log_path=work / "server.log") as server:
        process = psutil.Process(server.pid)
        stop = threading.Event()
        ready = threading.Barrier(args.clients + 1)
        urls = (server.http_url, server.grpc_url)
        threads = [
            threading.Thread(
                target=run_client, args=(urls, i, ready, stop, tally, args.bad_share), daemon=True
            )
            for i in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        ready.wait()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.duration_s:
            samples.append((elapsed, process.memory_info().rss, process.num_fds()))
            time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        samples.append((time.monotonic() - started, process.memory_info().rss, process.num_fds()))
        leftover = [n for n in os.listdir("/dev/shm") if n.startswith(SHM_PREFIX)]
        live = httpclient.InferenceServerClient(server.http_url).is_server_live()

    after = [s for s in samples if s[0] >= warmup_s] or samples[-1:]
    # Medians over a window at each end: single samples catch a transient buffer (a gzip
    # bomb decompresses up to the body limit before it is refused) rather than growth.
    window = max(5, len(after) // 10)
    base_rss = int(statistics.median(s[1] for s in after[:window]))
    final_rss = int(statistics.median(s[1] for s in after[-window:]))
    peak_rss = max(s[1] for s in after)
    growth = final_rss - base_rss
    passed = (
        tally.valid_failed == 0
        and tally.bad_failed == 0
        and growth < args.max_growth_mib * MIB
        and live
        and not leftover
    )
    lines = [
        "# Soak: valid and bad requests from many clients",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- command: `python benchmarks/soak.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- duration: {samples[-1][0]:.0f} s with {args.clients} clients "
        f"({args.bad_share:.0%} bad requests), warm-up {warmup_s:.0f} s",
        "",
        "| measure | value |",
        "|---|---|",
        f"| valid requests | {tally.valid} ({tally.valid / samples[-1][0]:.0f}/s) |",
        f"| failed valid requests | {tally.valid_failed} |",
        f"| bad requests | {tally.bad} |",
        f"| bad requests not answered with a client error | {tally.bad_failed} |",
        f"| RSS after warm-up (median of the first {window} s) | {base_rss / MIB:.1f} MiB |",
        f"| RSS at the end (median of the last {window} s) | {final_rss / MIB:.1f} MiB |",
        f"| RSS growth after warm-up | {growth / MIB:+.1f} MiB (limit {args.max_growth_mib:g}) |",
        f"| RSS peak after warm-up | {peak_rss / MIB:.1f} MiB |",
        f"| open descriptors after warm-up / at the end | {after[0][2]} / {samples[-1][2]} |",
        f"| server live at the end | {live} |",
        f"| client segments left in /dev/shm | {len(leftover)} |",
        f"| **result** | **{'PASS' if passed else 'FAIL'}** |",
    ]
    if tally.errors:
        lines += ["", "Failures (first 160 characters, count):", ""]
        lines += [f"- {count} x `{text}`" for text, count in tally.errors.most_common(20)]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
