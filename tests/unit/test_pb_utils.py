"""``triton_python_backend_utils`` as models see it: Triton's names, checks and messages."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import naiad.backends.python.runtime as runtime_package


@pytest.fixture(scope="module")
def pb_utils() -> Iterator[ModuleType]:
    """The module exactly as a worker imports it (its directory on sys.path)."""
    import importlib
    import sys

    directory = runtime_package.__path__[0]
    sys.path.insert(0, directory)
    try:
        yield importlib.import_module("triton_python_backend_utils")
    finally:
        sys.path.remove(directory)
        for name in [n for n in sys.modules if n.startswith(("_naiad_pb", "triton_python"))]:
            del sys.modules[name]


def _config(**extra: Any) -> str:
    base = {"name": "m", "max_batch_size": 0, "input": [], "output": []}
    base.update(extra)
    return json.dumps(base)


def test_tensor_basics(pb_utils: ModuleType) -> None:
    tensor = pb_utils.Tensor("x", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert tensor.name() == "x"
    assert tensor.triton_dtype() == 11  # TYPE_FP32
    assert tensor.shape() == [2, 3]
    assert tensor.is_cpu()
    strings = pb_utils.Tensor("s", np.array([b"a\x00", b"\xff"], dtype=object))
    assert strings.triton_dtype() == 13
    with pytest.raises(pb_utils.TritonModelException):
        pb_utils.Tensor("v", np.zeros(2, dtype="V4"))


def test_dlpack_round_trips_including_bf16(pb_utils: ModuleType) -> None:
    values = np.arange(8, dtype=np.int64).reshape(2, 4)
    back = pb_utils.Tensor.from_dlpack("y", pb_utils.Tensor("x", values).to_dlpack())
    np.testing.assert_array_equal(back.as_numpy(), values)
    bf16 = np.array([1.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16)
    tensor = pb_utils.Tensor("b", bf16)
    assert tensor.triton_dtype() == 14
    again = pb_utils.Tensor.from_dlpack("b2", tensor.to_dlpack())
    assert again.as_numpy().dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(again.as_numpy().astype(np.float32), [1.5, -2.0, 3.25])
    # Any DLPack producer works, not just capsules.
    np.testing.assert_array_equal(pb_utils.Tensor.from_dlpack("z", values).as_numpy(), values)


def test_bytes_serialization_matches_triton(pb_utils: ModuleType) -> None:
    values = np.array([b"ab", b"", b"\x00\xff", "té"], dtype=object)
    encoded = pb_utils.serialize_byte_tensor(values)
    assert encoded[:6] == b"\x02\x00\x00\x00ab"
    decoded = pb_utils.deserialize_bytes_tensor(encoded)
    assert list(decoded) == [b"ab", b"", b"\x00\xff", "té".encode()]
    assert pb_utils.serialize_byte_tensor(np.array([], dtype=object)) == ()


def test_type_helpers(pb_utils: ModuleType) -> None:
    assert pb_utils.triton_string_to_numpy("TYPE_FP16") is np.float16
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_
    assert pb_utils.triton_to_numpy_type(8) is np.int32
    assert pb_utils.numpy_to_triton_type(np.float64) == 12
    assert pb_utils.numpy_to_triton_type(np.object_) == 13
    assert pb_utils.numpy_to_triton_type(np.complex64) is None
    config = {"input": [{"name": "A", "data_type": "TYPE_FP32"}], "output": []}
    assert pb_utils.get_input_config_by_name(config, "A")["data_type"] == "TYPE_FP32"
    assert pb_utils.get_output_config_by_name(config, "A") is None
    assert not pb_utils.using_decoupled_model_transaction_policy(config)
    assert pb_utils.using_decoupled_model_transaction_policy(
        {"model_transaction_policy": {"decoupled": True}}
    )


def test_request_response_and_errors(pb_utils: ModuleType) -> None:
    tensor = pb_utils.Tensor("OUT", np.ones(2, dtype=np.int32))
    response = pb_utils.InferenceResponse([tensor], parameters={"a": 1, "b": "x", "c": True})
    assert json.loads(response.parameters()) == {"a": 1, "b": "x", "c": True}
    assert pb_utils.get_output_tensor_by_name(response, "OUT") is tensor
    assert not response.has_error()
    error = pb_utils.TritonError("nope", pb_utils.TritonError.NOT_FOUND)
    failed = pb_utils.InferenceResponse(error=error)
    assert failed.has_error() and failed.error().code() == 2 and failed.error().message() == "nope"
    assert pb_utils.TritonError("x").code() == pb_utils.TritonError.INTERNAL
    with pytest.raises(pb_utils.TritonModelException, match="Expect parameters values"):
        pb_utils.InferenceResponse([], parameters={"a": 1.5})
    request = pb_utils.InferenceRequest(
        model_name="other", inputs=[tensor], requested_output_names=["OUT"], parameters={"k": "v"}
    )
    assert request.correlation_id() == 0 and json.loads(request.parameters()) == {"k": "v"}
    # Outside a worker's initialized instance there is no server to run BLS on.
    with pytest.raises(pb_utils.TritonModelException, match="only possible after the model"):
        request.exec()


def test_model_config_helpers_and_conflicts(pb_utils: ModuleType) -> None:
    config = pb_utils.ModelConfig(_config(max_batch_size=8))
    with pytest.raises(ValueError, match="configuration specified max_batch_size 8"):
        config.set_max_batch_size(4)
    config.set_max_batch_size(16)
    config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [4]})
    config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [4]})  # same: fine
    with pytest.raises(ValueError, match="configuration expects datatype TYPE_FP32"):
        config.add_input({"name": "A", "data_type": "TYPE_INT32", "dims": [4]})
    with pytest.raises(ValueError, match="the model expects dims \\[5\\]"):
        config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [5]})
    with pytest.raises(ValueError, match="is missing 'dims' property"):
        config.add_output({"name": "B", "data_type": "TYPE_FP32"})
    with pytest.raises(ValueError, match="contains property other than"):
        config.add_output({"name": "B", "data_type": "TYPE_FP32", "dims": [1], "optional": True})
    config.set_dynamic_batching()
    config.set_model_transaction_policy({"decoupled": False})
    with pytest.raises(ValueError, match="trying to change decoupled property"):
        config.set_model_transaction_policy({"decoupled": True})
    result = config.as_dict()
    assert result["max_batch_size"] == 16 and result["dynamic_batching"] == {}
    assert [i["name"] for i in result["input"]] == ["A"]
    sequence = pb_utils.ModelConfig(_config(sequence_batching={}))
    with pytest.raises(ValueError, match="scheduling_choice as 'sequence_batching'"):
        sequence.set_dynamic_batching()


def test_metrics_count_set_and_observe(pb_utils: ModuleType) -> None:
    family = pb_utils.MetricFamily("requests_total", "requests", pb_utils.MetricFamily.COUNTER)
    assert pb_utils.MetricFamily("requests_total", "requests", 0) is family
    counter = family.Metric(labels={"model": "m"})
    counter.increment(2)
    counter.increment(3)
    assert counter.value() == 5
    with pytest.raises(pb_utils.TritonModelException):
        counter.increment(-1)
    gauge = pb_utils.MetricFamily("queue", "depth", pb_utils.MetricFamily.GAUGE).Metric()
    gauge.set(7)
    assert gauge.value() == 7
    histogram = pb_utils.MetricFamily("latency", "s", pb_utils.MetricFamily.HISTOGRAM)
    observed = histogram.Metric(buckets=[0.1, 1.0])
    observed.observe(0.5)
    with pytest.raises(pb_utils.TritonModelException):
        histogram.Metric()  # histograms need buckets


def test_metrics_snapshot_reads_back_as_custom_families(pb_utils: ModuleType) -> None:
    from naiad.backends.python.metrics import families_from_wire

    # The worker's own module (imported as _naiad_pb, not through naiad.*).
    pb_metrics = sys.modules["_naiad_pb.pb_metrics"]
    pb_metrics.changed.clear()
    family = pb_utils.MetricFamily("snap_seconds", "time", pb_utils.MetricFamily.HISTOGRAM)
    series = family.Metric(labels={"model": "m"}, buckets=[0.1, 1.0])
    assert pb_metrics.changed.is_set()  # a new series is sent at once
    series.observe(0.1)  # le="0.1" is inclusive, as in Prometheus
    series.observe(5.0)
    families = {f.name: f for f in families_from_wire(pb_metrics.snapshot())}
    (sample,) = families["snap_seconds"].samples
    assert families["snap_seconds"].kind == "histogram"
    assert dict(sample.labels) == {"model": "m"}
    assert list(sample.buckets) == [0.1, 1.0]
    assert list(sample.bucket_counts) == [1, 0, 1] and sample.sum == 5.1


def test_logger_sends_level_file_and_line(pb_utils: ModuleType) -> None:
    sent: list[tuple[int, str, str, int]] = []
    # The worker's own context module (imported as _naiad_pb, not through naiad.*).
    worker_context = pb_utils.Logger.log_info.__globals__["context"]
    original = worker_context.log_sink
    worker_context.log_sink = lambda *args: sent.append(args)
    try:
        pb_utils.Logger.log_info("hello")
        pb_utils.Logger.log("careful", pb_utils.Logger.WARNING)
        pb_utils.Logger.log_verbose("hidden unless --log-verbose")
    finally:
        worker_context.log_sink = original
    assert [(level, message) for level, message, _, _ in sent] == [(20, "hello"), (30, "careful")]
    assert sent[0][2].endswith("test_pb_utils.py") and sent[0][3] > 0
