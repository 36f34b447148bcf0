"""Scheduling against a real server: dynamic batching, queue policies, priorities,
instance groups, the rate limiter and exact statistics (HTTP and gRPC).

Slow requests come from an ONNX model that does as many rounds of busy work as the
request's value says, so a request of a few bytes can hold an instance for a second.
Assertions are on statistics and order, never on wall-clock thresholds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from naiad.examples import onnx_models
from tests.repository import write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

# Rounds of work per "slow" request: a few hundred ms on one thread.
SLOW_ROUNDS = 800
# A request that keeps the instance busy far longer than any queue timeout below
# (over a second), so the requests queued behind it reliably time out or wait.
BLOCK_ROUNDS = 8 * SLOW_ROUNDS
# Delay between starting a blocking request and the next one, so the blocker is the one
# executing; far below its run time.
STAGGER_S = 0.5


def _slow_config(name: str, extra: str = "", max_batch_size: int = 1, count: int = 1) -> str:
    return f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: {count} }} ]
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "1" }} }}
{extra}
"""


def _identity_config(name: str, batching: str) -> str:
    return f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
{batching}
"""


SLOW_MODELS = {
    "queue_size": "dynamic_batching { default_queue_policy { max_queue_size: 1 } }",
    "timeout_reject": (
        "dynamic_batching { default_queue_policy "
        "{ timeout_action: REJECT default_timeout_microseconds: 100000 } }"
    ),
    "timeout_delay": (
        "dynamic_batching { default_queue_policy "
        "{ timeout_action: DELAY default_timeout_microseconds: 100000 } }"
    ),
    "timeout_override": (
        "dynamic_batching { default_queue_policy { default_timeout_microseconds: 100000 "
        "allow_timeout_override: true } }"
    ),
    "priority": "dynamic_batching { priority_levels: 2 default_priority_level: 2 }",
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scheduling")
    slow = onnx_models.spin()
    identity = onnx_models.identity("FP32", [-1])
    for name, extra in SLOW_MODELS.items():
        write_model(root, name, _slow_config(name, extra), slow)
    write_model(root, "three_instances", _slow_config("three_instances", count=3), slow)
    write_model(root, "one_instance", _slow_config("one_instance"), slow)
    write_model(
        root,
        "ordered",
        _slow_config("ordered", "dynamic_batching { preserve_ordering: true }", count=2),
        slow,
    )
    write_model(root, "unordered", _slow_config("unordered", "dynamic_batching { }", count=2), slow)
    write_model(
        root,
        "limited",
        _slow_config("limited").replace(
            "count: 1 }", 'count: 2 rate_limiter { resources [ { name: "R" count: 1 } ] } }'
        ),
        slow,
    )
    write_model(
        root,
        "preferred",
        _identity_config(
            "preferred",
            "dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 30000000 }",
        ),
        identity,
    )
    write_model(
        root,
        "shapes",
        _identity_config(
            "shapes",
            "dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 1000000 }",
        ),
        identity,
    )
    write_model(root, "counted", _identity_config("counted", ""), identity)
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    with ServerProcess(
        [repository], "--rate-limit=execution_count", "--rate-limit-resource=R:1"
    ) as process:
        yield process


def _slow_input(rounds: int = SLOW_ROUNDS) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.full((1, 1), rounds, dtype=np.float32))
    return [tensor]


def _identity_input(values: np.ndarray) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("INPUT0", list(values.shape), "FP32")
    tensor.set_data_from_numpy(values)
    return [tensor]


def _stats(server: ServerProcess, model: str) -> dict:
    client = httpclient.InferenceServerClient(server.http_url)
    (entry,) = client.get_inference_statistics(model)["model_stats"]
    return entry


def _run_concurrently(
    calls: list[Callable[[], object]], stagger_s: float | list[float] = 0.0
) -> list[object]:
    """Run calls on threads, each started ``stagger_s`` after the one before it (a list
    gives each gap); exceptions are returned in place of results."""
    gaps = stagger_s if isinstance(stagger_s, list) else [stagger_s] * len(calls)
    results: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread, gap in zip(threads, gaps, strict=True):
        thread.start()
        time.sleep(gap)
    for thread in threads:
        thread.join(timeout=120)
    return results


# -- dynamic batching ------------------------------------------------------------------


def test_preferred_batch_size_forms_one_batch(server: ServerProcess) -> None:
    client_url = server.grpc_url

    def call(i: int) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            client = grpcclient.InferenceServerClient(client_url)
            values = np.full((1, 3), float(i), dtype=np.float32)
            return client.infer("preferred", _identity_input(values)).as_numpy("OUTPUT0")

        return run

    results = _run_concurrently([call(i) for i in range(4)])
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, np.full((1, 3), float(i), dtype=np.float32))
    stats = _stats(server, "preferred")
    assert stats["execution_count"] == 1
    assert stats["inference_count"] == 4
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]] == [
        (4, 1)
    ]


def test_different_shapes_never_share_a_batch(server: ServerProcess) -> None:
    def call(width: int) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            values = np.arange(width, dtype=np.float32).reshape(1, width)
            return client.infer("shapes", _identity_input(values)).as_numpy("OUTPUT0")

        return run

    results = _run_concurrently([call(3), call(5), call(3), call(5)])
    for width, result in zip([3, 5, 3, 5], results, strict=True):
        np.testing.assert_array_equal(result, np.arange(width, dtype=np.float32).reshape(1, width))
    stats = _stats(server, "shapes")
    assert stats["inference_count"] == 4
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert 4 not in sizes  # a shape-3 and a shape-5 request never ran together
    assert sum(size * count for size, count in sizes.items()) == 4


# -- queue policies --------------------------------------------------------------------


def _slow_call(
    server: ServerProcess, model: str, rounds: int = SLOW_ROUNDS, **kwargs: object
) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        inputs = _slow_input(rounds)
        return client.infer(model, inputs, client_timeout=120, **kwargs).as_numpy("OUTPUT0")

    return run


def test_max_queue_size_rejects_only_the_overflow(server: ServerProcess) -> None:
    results = _run_concurrently(
        [
            _slow_call(server, "queue_size", BLOCK_ROUNDS),  # executing
            # While it runs, two more: the first to arrive fills the queue (size 1), the
            # other overflows. Which one arrives first is the threads' race, not asserted.
            _slow_call(server, "queue_size", 0),
            _slow_call(server, "queue_size", 0),
        ],
        stagger_s=[STAGGER_S, 0.1, 0.0],
    )
    assert isinstance(results[0], np.ndarray), results[0]
    errors = [r for r in results[1:] if isinstance(r, Exception)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], InferenceServerException)
    assert errors[0].status() == "StatusCode.UNAVAILABLE"
    assert "Exceeds maximum queue size" in errors[0].message()
    assert sum(isinstance(r, np.ndarray) for r in results[1:]) == 1


def test_queue_timeout_reject_fails_only_the_timed_out_request(server: ServerProcess) -> None:
    results = _run_concurrently(
        [
            _slow_call(server, "timeout_reject", BLOCK_ROUNDS),
            _slow_call(server, "timeout_reject", 0),
        ],
        stagger_s=STAGGER_S,
    )
    assert isinstance(results[0], np.ndarray)
    assert isinstance(results[1], InferenceServerException), results[1]
    assert "Request timeout expired" in results[1].message()
    assert results[1].status() == "StatusCode.UNAVAILABLE"
    stats = _stats(server, "timeout_reject")
    assert stats["inference_stats"]["success"]["count"] == 1
    assert stats["inference_stats"]["fail"]["count"] == 1


def test_queue_timeout_delay_keeps_the_request(server: ServerProcess) -> None:
    results = _run_concurrently(
        [_slow_call(server, "timeout_delay", BLOCK_ROUNDS), _slow_call(server, "timeout_delay", 0)],
        stagger_s=STAGGER_S,
    )
    assert all(isinstance(r, np.ndarray) for r in results), results


def test_timeout_override_may_only_lower_the_timeout(server: ServerProcess) -> None:
    # Default 100 ms. A request asking for 60 s is still rejected at 100 ms (no raising),
    # and the request in front of it, asking for nothing, runs.
    results = _run_concurrently(
        [
            _slow_call(server, "timeout_override", BLOCK_ROUNDS),
            _slow_call(server, "timeout_override", 0, timeout=60_000_000),
        ],
        stagger_s=STAGGER_S,
    )
    assert isinstance(results[0], np.ndarray)
    assert isinstance(results[1], InferenceServerException)
    assert "Request timeout expired" in results[1].message()
    # Lowering works: 1 µs expires while the first request still runs.
    results = _run_concurrently(
        [
            _slow_call(server, "timeout_override", BLOCK_ROUNDS),
            _slow_call(server, "timeout_override", 0, timeout=1),
        ],
        stagger_s=STAGGER_S,
    )
    assert isinstance(results[0], np.ndarray)
    assert isinstance(results[1], InferenceServerException)


def test_high_priority_request_runs_before_queued_low_priority(server: ServerProcess) -> None:
    finished: list[str] = []
    lock = threading.Lock()

    def call(label: str, priority: int, rounds: int = 0) -> Callable[[], None]:
        def run() -> None:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            client.infer("priority", _slow_input(rounds), priority=priority, client_timeout=120)
            with lock:
                finished.append(label)

        return run

    results = _run_concurrently(
        [call("first", 2, BLOCK_ROUNDS), call("low-1", 2), call("low-2", 2), call("high", 1)],
        stagger_s=[STAGGER_S, 0.05, 0.05, 0.0],
    )
    assert all(r is None for r in results), results
    assert finished[0] == "first"  # already executing when the others arrived
    assert finished[1] == "high", finished


def test_preserve_ordering_with_uneven_instances(server: ServerProcess) -> None:
    def run_pair(model: str) -> dict[str, float]:
        """When each client got its response; with ordering both responses leave together,
        so which client thread records first is a race: compare times, not order."""
        finished: dict[str, float] = {}

        def call(label: str, rounds: int) -> Callable[[], None]:
            def run() -> None:
                client = grpcclient.InferenceServerClient(server.grpc_url)
                client.infer(model, _slow_input(rounds), client_timeout=120)
                finished[label] = time.monotonic()

            return run

        results = _run_concurrently(
            [call("slow", BLOCK_ROUNDS), call("fast", 0)], stagger_s=STAGGER_S
        )
        assert all(r is None for r in results), results
        return finished

    # Without ordering the small request overtakes the large one on the second instance...
    unordered = run_pair("unordered")
    assert unordered["slow"] - unordered["fast"] > 0.2, unordered
    # ...with preserve_ordering its response waits for the earlier request.
    ordered = run_pair("ordered")
    assert ordered["fast"] > ordered["slow"] - 0.05, ordered


# -- instance groups and the rate limiter ------------------------------------------


def _queue_and_infer_ns(server: ServerProcess, model: str) -> tuple[int, int]:
    stats = _stats(server, model)["inference_stats"]
    return stats["queue"]["ns"], stats["compute_infer"]["ns"]


def test_three_instances_run_three_requests_at_once(server: ServerProcess) -> None:
    results = _run_concurrently([_slow_call(server, "three_instances")] * 3)
    assert all(isinstance(r, np.ndarray) for r in results), results
    stats = _stats(server, "three_instances")
    assert stats["execution_count"] == 3
    queue_ns, infer_ns = _queue_and_infer_ns(server, "three_instances")
    # No request waited for another's execution: queueing is a sliver of compute.
    assert queue_ns < infer_ns / 10, (queue_ns, infer_ns)
    # Whereas one instance makes them wait for each other.
    results = _run_concurrently([_slow_call(server, "one_instance")] * 3)
    assert all(isinstance(r, np.ndarray) for r in results), results
    queue_ns, infer_ns = _queue_and_infer_ns(server, "one_instance")
    assert queue_ns > infer_ns / 3, (queue_ns, infer_ns)


def test_rate_limiter_serializes_instances_sharing_a_resource(server: ServerProcess) -> None:
    # Two instances, but each needs the one unit of resource R: they cannot overlap.
    results = _run_concurrently([_slow_call(server, "limited")] * 2)
    assert all(isinstance(r, np.ndarray) for r in results), results
    queue_ns, infer_ns = _queue_and_infer_ns(server, "limited")
    assert queue_ns > infer_ns / 4, (queue_ns, infer_ns)


# -- statistics --------------------------------------------------------------------


def test_statistics_are_exact_over_http_and_grpc(server: ServerProcess) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    values = np.ones((1, 4), dtype=np.float32)
    for _ in range(5):
        grpc.infer("counted", _identity_input(values))
    batch = httpclient.InferInput("INPUT0", [3, 4], "FP32")
    batch.set_data_from_numpy(np.ones((3, 4), dtype=np.float32))
    http.infer("counted", [batch])
    bad = grpcclient.InferInput("INPUT0", [1, 4], "INT32")
    bad.set_data_from_numpy(np.ones((1, 4), dtype=np.int32))
    for _ in range(2):
        with pytest.raises(InferenceServerException):
            grpc.infer("counted", [bad])

    http_stats = http.get_inference_statistics("counted")["model_stats"][0]
    assert http_stats["inference_count"] == 8  # 5 requests of batch 1 and one of batch 3
    assert http_stats["execution_count"] == 6
    assert http_stats["inference_stats"]["success"]["count"] == 6
    assert http_stats["inference_stats"]["fail"]["count"] == 2
    assert http_stats["last_inference"] > 0
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in http_stats["batch_stats"]}
    assert sizes == {1: 5, 3: 1}

    grpc_stats = grpc.get_inference_statistics("counted", "1").model_stats[0]
    assert grpc_stats.inference_count == 8
    assert grpc_stats.execution_count == 6
    assert grpc_stats.inference_stats.success.count == 6
    assert grpc_stats.inference_stats.fail.count == 2

    everything = http.get_inference_statistics()["model_stats"]
    assert "counted" in {entry["name"] for entry in everything}
    with pytest.raises(InferenceServerException, match="unknown model"):
        http.get_inference_statistics("nope")
