"""Trace settings (``--trace-config``, the trace extension's updates) and the tracer's sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from naiad.backends.base import ExecutionTimes
from naiad.errors import InvalidArgumentError, UnsupportedError
from naiad.inference import InferInput, InferOutput
from naiad.observability.trace_settings import TraceConfig
from naiad.observability.tracing import Tracer, http_response, http_update
from naiad.tensors import DataType


def _tracer(tmp_path: Path, *entries: str) -> Tracer:
    return Tracer(TraceConfig.from_entries([f"triton,file={tmp_path / 'trace.json'}", *entries]))


def test_trace_config_parses_tritons_entries() -> None:
    config = TraceConfig.from_entries(
        [
            "triton,file=/tmp/t.json",
            "triton,log-frequency=50",
            "rate=100",
            "level=TIMESTAMPS",
            "level=TENSORS",
            "count=10",
            "opentelemetry,url=http://127.0.0.1:4318/v1/traces",
            "opentelemetry,resource=service.name=naiad-test",
            "opentelemetry,bsp_schedule_delay=100",
        ]
    )
    setting = config.setting
    assert (setting.file, setting.log_frequency, setting.rate, setting.count) == (
        "/tmp/t.json",
        50,
        100,
        10,
    )
    assert setting.level_names() == ["TIMESTAMPS", "TENSORS"]
    assert setting.mode == "triton"
    assert config.otel_resource == {"service.name": "naiad-test"}
    assert config.otel_options == {"bsp_schedule_delay": 100}


@pytest.mark.parametrize(
    "entry", ["level=LOUD", "rate=-1", "count=-2", "mode=zipkin", "triton,url=x", "oops"]
)
def test_trace_config_errors(entry: str) -> None:
    with pytest.raises(ValueError):
        TraceConfig.from_entries([entry])


def test_settings_report_tritons_json(tmp_path: Path) -> None:
    tracer = _tracer(tmp_path, "level=TIMESTAMPS", "rate=1")
    assert http_response(tracer.settings_response()) == {
        "trace_level": ["TIMESTAMPS"],
        "trace_rate": "1",
        "trace_count": "-1",
        "log_frequency": "0",
        "trace_file": str(tmp_path / "trace.json"),
        "trace_mode": "triton",
    }


def test_trace_file_is_never_settable_over_the_network(tmp_path: Path) -> None:
    tracer = _tracer(tmp_path)
    with pytest.raises(UnsupportedError, match="trace file location can not be updated"):
        tracer.update("", http_update({"trace_file": "/etc/passwd"}))
    with pytest.raises(UnsupportedError):
        tracer.update("simple", {"trace_file": None})


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"trace_level": ["OFF", "TIMESTAMPS"]}, "Expect only one trace level 'OFF'"),
        ({"trace_rate": ["x"]}, "Unable to parse 'trace_rate', got: x"),
        ({"trace_rate": ["1", "2"]}, "expect only 1 value for 'trace_rate'"),
        ({"trace_count": ["-5"]}, "Expecting value >= -1"),
        ({"log_frequency": ["99999999999"]}, "value is out of range"),
    ],
)
def test_invalid_updates_are_refused(
    tmp_path: Path, update: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        _tracer(tmp_path).update("", update)


def test_model_settings_follow_global_ones_they_do_not_override(tmp_path: Path) -> None:
    tracer = _tracer(tmp_path, "rate=10")
    model = tracer.update("simple", {"trace_level": ["TIMESTAMPS"]})
    assert model["trace_rate"] == ["10"] and model["trace_level"] == ["TIMESTAMPS"]
    tracer.update("", {"trace_rate": ["3"]})
    assert tracer.settings_response("simple")["trace_rate"] == ["3"]
    assert tracer.settings_response("")["trace_level"] == ["OFF"]
    # Clearing the only override makes the model follow the global setting again.
    tracer.update("simple", {"trace_level": None})
    assert tracer.settings_response("simple")["trace_level"] == ["OFF"]


def test_sampling_follows_rate_and_count(tmp_path: Path) -> None:
    tracer = _tracer(tmp_path, "level=TIMESTAMPS", "rate=2", "count=3")
    assert tracer.active
    sampled = [tracer.start("m", "HTTP") is not None for _ in range(10)]
    assert sampled == [False, True, False, True, False, True, False, False, False, False]
    assert tracer.settings_response()["trace_count"] == ["0"]


def test_untraced_models_cost_nothing_when_tracing_is_off(tmp_path: Path) -> None:
    tracer = _tracer(tmp_path)
    assert not tracer.active
    tracer.update("hot", {"trace_level": ["TIMESTAMPS"], "trace_rate": ["1"]})
    assert tracer.active
    assert tracer.start("cold", "HTTP") is None
    assert tracer.start("hot", "HTTP") is not None


def test_trace_file_records_one_object_per_request(tmp_path: Path) -> None:
    tracer = _tracer(tmp_path, "level=TIMESTAMPS", "rate=1", "triton,log-frequency=2")
    for request in range(3):
        trace = tracer.start("m", "HTTP")
        assert trace is not None
        trace.stamp("HTTP_RECV_START", 100 * request + 1)
        trace.begin_model("m", 1, f"r{request}", 100 * request + 2, [])
        trace.end_model(None)
        trace.finish()
    first = json.loads((tmp_path / "trace.json.0").read_text())
    assert [r["request_id"] for r in first] == ["r0", "r1"]
    assert [t["name"] for t in first[0]["timestamps"]] == [
        "HTTP_RECV_START",
        "REQUEST_START",
        "REQUEST_END",
    ]
    assert not (tmp_path / "trace.json.1").exists()
    tracer.close()  # the rest goes out at shutdown
    assert [r["id"] for r in json.loads((tmp_path / "trace.json.1").read_text())] == [3]


def test_tensors_level_records_inputs_and_outputs(tmp_path: Path) -> None:
    tracer = _tracer(tmp_path, "level=TIMESTAMPS", "level=TENSORS", "rate=1")
    trace = tracer.start("m", "GRPC")
    assert trace is not None
    data = np.array([[1, 2, 3]], dtype=np.int32)
    trace.begin_model("m", 2, "", 10, [InferInput("IN", DataType.INT32, (1, 3), data)])
    times = ExecutionTimes(20, 21, 30, 31)
    out = np.array([b"a", b"b"], dtype=object)
    trace.end_model(times, [InferOutput("OUT", DataType.BYTES, (2,), out)])
    trace.finish()
    tracer.close()
    records = json.loads((tmp_path / "trace.json").read_text())
    assert records[0]["model_version"] == 2 and "request_id" not in records[0]
    names = [t["name"] for t in records[0]["timestamps"]]
    assert names[:2] == ["REQUEST_START", "COMPUTE_START"] and names[-1] == "REQUEST_END"
    assert records[1] == {
        "id": 1,
        "activity": "TENSOR_QUEUE_INPUT",
        "tensor": {"name": "IN", "data": "1,2,3", "shape": "1,3", "dtype": "INT32"},
    }
    assert records[2]["activity"] == "TENSOR_BACKEND_OUTPUT"
    assert records[2]["tensor"]["data"] == "a,b" and records[2]["tensor"]["dtype"] == "BYTES"
