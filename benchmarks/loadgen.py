"""Load generation for the benchmarks: a closed-loop Python generator and a perf_analyzer runner.

Both produce a :class:`Measurement`. The Python generator runs N threads, each with its own
request callable (its own client object), each sending the next request as soon as the last one
returned. After a fixed warm-up, requests that *complete* inside the measured window count
toward throughput and latency, the same rule perf_analyzer uses.
"""

from __future__ import annotations

import csv
import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PEERS_SCRIPTS = Path(os.environ.get("NAIAD_PEERS_SCRIPTS", "/work/shared/peers"))
BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / ".work" / "peers"

RequestFn = Callable[[], object]
CpuReader = Callable[[], float]
# The CPU party for Naiad's event-loop thread: a part of "server", listed apart.
LOOP = "loop"


@dataclass(slots=True)
class Measurement:
    """One measured point. Latencies are in microseconds."""

    name: str
    concurrency: int
    infer_per_s: float
    p50_us: float
    p99_us: float
    requests: int
    window_s: float
    # Average CPU cores each party used during the window: "server", "client", "process".
    cpu_cores: dict[str, float] = field(default_factory=dict)


def closed_loop(
    name: str,
    make_request: Callable[[], RequestFn],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    cpu_readers: dict[str, CpuReader] | None = None,
) -> Measurement:
    """Run ``concurrency`` threads that each call their own request function back to back.

    ``make_request`` is called once per thread (in the main thread, before the clock starts), so
    each thread gets its own client; a request callable with a ``close()`` is closed at the end. ``cpu_readers`` read the CPU time of the parties involved
    (server, client); they are sampled at the window's edges.
    """
    requests = [make_request() for _ in range(concurrency)]
    # Per-thread lists: appends never contend, and the GIL keeps each list consistent.
    samples: list[list[tuple[float, float]]] = [[] for _ in range(concurrency)]
    failures: list[BaseException] = []
    stop = threading.Event()
    barrier = threading.Barrier(concurrency + 1)

    def worker(index: int) -> None:
        call, out = requests[index], samples[index]
        clock = time.perf_counter
        barrier.wait()
        while not stop.is_set():
            begin = clock()
            try:
                call()
            except Exception as exc:  # re-raised below: one failed request voids the point
                failures.append(exc)
                return
            end = clock()
            out.append((end, end - begin))

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"load-{i}", daemon=True)
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    time.sleep(warmup_s)
    window_start = time.perf_counter()
    cpu_start = _read_cpu(cpu_readers)
    time.sleep(duration_s)
    window_end = time.perf_counter()
    cpu_end = _read_cpu(cpu_readers)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    for request in requests:
        close = getattr(request, "close", None)
        if callable(close):
            close()  # the request's own client: free its connection now, not at GC
    if failures:
        raise RuntimeError(
            f"{name}: {len(failures)} request(s) failed at concurrency {concurrency}; "
            f"first: {failures[0]!r}"
        ) from failures[0]
    latencies = np.array(
        [
            lat
            for per_thread in samples
            for end, lat in per_thread
            if window_start <= end <= window_end
        ]
    )
    if latencies.size == 0:
        raise RuntimeError(f"{name}: no request completed inside the {duration_s} s window")
    window = window_end - window_start
    return Measurement(
        name=name,
        concurrency=concurrency,
        infer_per_s=latencies.size / window,
        p50_us=float(np.percentile(latencies, 50)) * 1e6,
        p99_us=float(np.percentile(latencies, 99)) * 1e6,
        requests=int(latencies.size),
        window_s=window,
        cpu_cores=_cpu_cores(cpu_start, cpu_end, window),
    )


def _read_cpu(readers: dict[str, CpuReader] | None) -> dict[str, float]:
    return {name: read() for name, read in (readers or {}).items()}


def _cpu_cores(start: dict[str, float], end: dict[str, float], wall_s: float) -> dict[str, float]:
    return {name: (end[name] - start[name]) / wall_s for name in start}


def process_cpu_seconds() -> float:
    """CPU time of this process, all threads: the in-process ORT baseline, or the Python clients."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """Non-idle CPU time of the whole machine (all cores, Linux ``/proc/stat``).

    Subtracting the parties we measure leaves what *other* processes used: on a shared
    machine that tells a clean point from a disturbed one.
    """
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    # Fields 8 and 9 (guest, guest_nice) are already counted in user and nice.
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this process's children that have exited: a finished perf_analyzer run."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- perf_analyzer -------------------------------------------------------------------------


def perf_analyzer_installed(peers_dir: Path = PEERS_DIR) -> bool:
    return (peers_dir / "perf_analyzer" / "bin" / "perf_analyzer").is_file()


def triton_installed(peers_dir: Path = PEERS_DIR) -> bool:
    """perf_analyzer and tritonserver, both installed by the peers' ``setup.sh``."""
    return perf_analyzer_installed(peers_dir) and (peers_dir / "triton").is_dir()


def install_perf_analyzer(peers_dir: Path = PEERS_DIR) -> None:
    """Run the shared ``setup.sh`` into ``peers_dir`` (about a minute; needs PyPI)."""
    print(f"setting up perf_analyzer in {peers_dir} (about a minute) ...", flush=True)
    subprocess.run(["bash", str(PEERS_SCRIPTS / "setup.sh"), str(peers_dir)], check=True)


def perf_analyzer_version(peers_dir: Path = PEERS_DIR) -> str:
    result = subprocess.run(
        ["bash", str(PEERS_SCRIPTS / "perf_analyzer.sh"), str(peers_dir), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (result.stdout.strip() or result.stderr.strip()).splitlines()[0]


def perf_analyzer(
    name: str,
    model: str,
    url: str,
    protocol: str,
    concurrency: int,
    duration_s: float,
    workdir: Path,
    cpu_readers: dict[str, CpuReader] | None = None,
    peers_dir: Path = PEERS_DIR,
) -> Measurement:
    """One perf_analyzer point: three windows of ``duration_s / 3`` each, merged.

    perf_analyzer normally repeats windows until three in a row agree within 10 %, which on a
    small shared machine can take minutes or fail outright. A very loose stability threshold
    makes it measure exactly three windows, so each point costs a fixed ``duration_s``, the
    same as the Python generator's window.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = workdir / f"pa-{protocol}-c{concurrency}.csv"
    window_ms = max(200, int(duration_s * 1000 / 3))
    command = [
        "bash", str(PEERS_SCRIPTS / "perf_analyzer.sh"), str(peers_dir),
        "-m", model, "-u", url, "-i", protocol, "-b", "1",
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(window_ms),
        "--stability-percentage", "1000", "--max-trials", "3",
        "-f", str(csv_path),
    ]  # fmt: skip
    readers = {**(cpu_readers or {}), "client": children_cpu_seconds}
    cpu_start = _read_cpu(readers)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    cpu_end = _read_cpu(readers)
    (workdir / f"pa-{protocol}-c{concurrency}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0 or not csv_path.exists():
        raise RuntimeError(
            f"perf_analyzer failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    with csv_path.open(newline="") as handle:
        row = next(csv.DictReader(handle))
    throughput = float(row["Inferences/Second"])
    window_s = 3 * window_ms / 1000
    return Measurement(
        name=name,
        concurrency=concurrency,
        infer_per_s=throughput,
        p50_us=float(row["p50 latency"]),
        p99_us=float(row["p99 latency"]),
        requests=round(throughput * window_s),
        window_s=window_s,
        # Sampled around the whole perf_analyzer run, start-up included: a slight underestimate.
        cpu_cores=_cpu_cores(cpu_start, cpu_end, elapsed),
    )


def server_point(
    name: str,
    model: str,
    protocol: str,
    url: str,
    x: np.ndarray,
    concurrency: int,
    readers: dict[str, CpuReader],
    *,
    warmup_s: float,
    duration_s: float,
    use_perf_analyzer: bool,
    workdir: Path,
    input_name: str = "INPUT0",
    output_name: str = "OUTPUT0",
) -> Callable[[], Measurement]:
    """How to measure one point of a running server: call the result to measure (again).

    With perf_analyzer, the Python clients warm the server first (perf_analyzer 2.51 has no
    warm-up of its own) and perf_analyzer's raw output goes to ``workdir``. Otherwise the
    Python closed loop measures, and its own CPU counts as the client's.
    """

    def requests() -> RequestFn:
        return TritonCall(protocol, url, model, x, input_name, output_name)

    if use_perf_analyzer:

        def measure() -> Measurement:
            closed_loop(name, requests, concurrency, 0.0, warmup_s)
            return perf_analyzer(
                name, model, url, protocol, concurrency, duration_s, workdir, readers
            )

        return measure
    client_readers = {**readers, "client": process_cpu_seconds}
    return lambda: closed_loop(name, requests, concurrency, warmup_s, duration_s, client_readers)


class TritonCall:
    """One tritonclient with a pre-built single-input request; calling it sends one inference.

    Each load thread gets its own (tritonclient objects are not shared between threads).
    Over HTTP the input and output travel as binary data, as tritonclient sends by default.
    """

    def __init__(
        self,
        protocol: str,
        url: str,
        model: str,
        x: np.ndarray,
        input_name: str = "INPUT0",
        output_name: str = "OUTPUT0",
    ) -> None:
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient
        from tritonclient.utils import np_to_triton_dtype

        module: Any = httpclient if protocol == "http" else grpcclient
        self._client = module.InferenceServerClient(url)
        tensor = module.InferInput(input_name, list(x.shape), np_to_triton_dtype(x.dtype))
        tensor.set_data_from_numpy(x)
        self._inputs = [tensor]
        self._outputs = [module.InferRequestedOutput(output_name)]
        self._model = model

    def __call__(self) -> Any:
        return self._client.infer(self._model, self._inputs, outputs=self._outputs)

    def close(self) -> None:
        self._client.close()
