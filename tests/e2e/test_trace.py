"""The trace extension on a real server: Triton's trace file, settings over HTTP and gRPC,
and OpenTelemetry spans sent to a real OTLP/HTTP receiver on loopback.
"""

from __future__ import annotations

import gzip
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from naiad.examples import onnx_models
from tests.repository import identity_config, simple_config, write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

CORE = [
    "REQUEST_START",
    "QUEUE_START",
    "COMPUTE_START",
    "COMPUTE_INPUT_END",
    "COMPUTE_OUTPUT_START",
    "COMPUTE_END",
    "REQUEST_END",
]
HTTP_ORDER = ["HTTP_RECV_START", "HTTP_RECV_END", *CORE, "HTTP_SEND_START", "HTTP_SEND_END"]
GRPC_ORDER = [
    "GRPC_WAITREAD_START",
    "GRPC_WAITREAD_END",
    *CORE,
    "GRPC_SEND_START",
    "GRPC_SEND_END",
]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trace")
    write_model(root, "simple", simple_config("simple", "INT32"), onnx_models.add_sub("INT32"))
    write_model(
        root, "identity", identity_config("identity", "FP32"), onnx_models.identity("FP32", [-1])
    )
    return root


def _http_inputs(data: np.ndarray) -> list[httpclient.InferInput]:
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, list(data.shape), "INT32")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def _grpc_inputs(data: np.ndarray) -> list[grpcclient.InferInput]:
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = grpcclient.InferInput(name, list(data.shape), "INT32")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def _identity(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("INPUT0", [1, 2], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
    client.infer("identity", [tensor])


GOOD = np.arange(16, dtype=np.int32).reshape(1, 16)


def test_trace_file_has_one_ordered_record_per_request(repository: Path, tmp_path: Path) -> None:
    trace_file = tmp_path / "trace.json"
    server = ServerProcess(
        [repository],
        f"--trace-config=triton,file={trace_file}",
        "--trace-config=level=TIMESTAMPS",
        "--trace-config=rate=1",
    ).start()
    try:
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        for index in range(3):
            http.infer("simple", _http_inputs(GOOD), request_id=f"http-{index}")
        for index in range(2):
            grpc.infer("simple", _grpc_inputs(GOOD), request_id=f"grpc-{index}")
        with pytest.raises(InferenceServerException):
            http.infer("simple", _http_inputs(np.ones((1, 4), dtype=np.int32)), request_id="bad")
    finally:
        server.stop()  # with log-frequency 0, Triton writes the trace file at shutdown
    records = json.loads(trace_file.read_text())
    assert [r["request_id"] for r in records] == [
        "http-0",
        "http-1",
        "http-2",
        "grpc-0",
        "grpc-1",
        "bad",
    ]
    assert len({r["id"] for r in records}) == 6
    for record in records:
        assert (record["model_name"], record["model_version"]) == ("simple", 1)
        names = [t["name"] for t in record["timestamps"]]
        stamps = [t["ns"] for t in record["timestamps"]]
        assert stamps == sorted(stamps), record
        if record["request_id"] == "bad":  # refused by validation: never queued
            assert names == [*HTTP_ORDER[:3], "REQUEST_END", *HTTP_ORDER[-2:]]
        elif record["request_id"].startswith("http"):
            assert names == HTTP_ORDER
        else:
            assert names == GRPC_ORDER


def test_trace_settings_over_http_and_grpc(repository: Path, tmp_path: Path) -> None:
    trace_file = tmp_path / "settings.json"
    with ServerProcess(
        [repository], f"--trace-config=triton,file={trace_file}", "--trace-config=rate=5"
    ) as server:
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        assert http.get_trace_settings() == {
            "trace_level": ["OFF"],
            "trace_rate": "5",
            "trace_count": "-1",
            "log_frequency": "0",
            "trace_file": str(trace_file),
            "trace_mode": "triton",
        }
        assert "trace" in http.get_server_metadata()["extensions"]
        # A model's own settings; the rest follows the global ones.
        updated = http.update_trace_settings(
            "identity", {"trace_level": ["TIMESTAMPS"], "trace_count": "2", "trace_rate": "1"}
        )
        assert updated["trace_level"] == ["TIMESTAMPS"] and updated["trace_count"] == "2"
        settings = grpc.get_trace_settings("identity", as_json=True)["settings"]
        assert settings["trace_rate"]["value"] == ["1"]
        assert http.get_trace_settings()["trace_level"] == ["OFF"]
        for _ in range(4):
            _identity(http)
            http.infer("simple", _http_inputs(GOOD))  # global level OFF: not traced
        assert http.get_trace_settings("identity")["trace_count"] == "0"
        # The trace file is fixed at start: refused over both protocols, Triton's words.
        with pytest.raises(InferenceServerException, match="trace file location can not be"):
            http.update_trace_settings(settings={"trace_file": "/tmp/elsewhere.json"})
        with pytest.raises(InferenceServerException) as error:
            grpc.update_trace_settings("identity", {"trace_file": "/tmp/elsewhere.json"})
        assert error.value.status() == "StatusCode.UNIMPLEMENTED"
        with pytest.raises(InferenceServerException, match="Request for unknown model : nope"):
            http.get_trace_settings("nope")
        with pytest.raises(InferenceServerException, match="Expect only one trace level 'OFF'"):
            grpc.update_trace_settings(settings={"trace_level": ["OFF", "TIMESTAMPS"]})
        # Clearing a model's settings (null) brings back the global ones.
        cleared = http.update_trace_settings(
            "identity", {"trace_level": None, "trace_count": None, "trace_rate": None}
        )
        assert cleared["trace_level"] == ["OFF"] and cleared["trace_rate"] == "5"
    records = json.loads(trace_file.read_text())
    assert [r["model_name"] for r in records] == ["identity", "identity"]


# -- OpenTelemetry -----------------------------------------------------------------------


class OtlpReceiver:
    """A real OTLP/HTTP trace receiver on loopback: decodes every export request's spans."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans: list[object] = []
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                receiver.requests += 1
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    pytest.importorskip("opentelemetry.sdk", reason="needs naiad[otel] (the OpenTelemetry SDK)")
    pytest.importorskip("opentelemetry.proto", reason="needs opentelemetry-proto")
    otlp = OtlpReceiver()
    yield otlp
    otlp.close()


def test_opentelemetry_spans_carry_the_clients_trace_id(
    repository: Path, receiver: OtlpReceiver
) -> None:
    trace_ids = {"http": secrets.token_hex(16), "grpc": secrets.token_hex(16)}
    parent_span = secrets.token_hex(8)
    server = ServerProcess(
        [repository],
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={receiver.url}",
        "--trace-config=opentelemetry,resource=service.name=naiad-e2e",
        "--trace-config=opentelemetry,bsp_schedule_delay=100",
        "--trace-config=level=TIMESTAMPS",
        # Rate 0: only requests that carry a W3C trace context are traced (Triton's advice).
        "--trace-config=rate=0",
    ).start()
    try:
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        assert http.get_trace_settings()["trace_mode"] == "opentelemetry"
        http.infer(
            "simple",
            _http_inputs(GOOD),
            headers={"traceparent": f"00-{trace_ids['http']}-{parent_span}-01"},
        )
        grpc.infer(
            "simple",
            _grpc_inputs(GOOD),
            headers={"traceparent": f"00-{trace_ids['grpc']}-{parent_span}-01"},
        )
        http.infer("simple", _http_inputs(GOOD))  # no context and rate 0: not traced
        deadline = time.monotonic() + 15
        while len(receiver.spans) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()  # flushes whatever the batch processor still holds
    spans = receiver.spans
    assert {span.trace_id.hex() for span in spans} == set(trace_ids.values())  # type: ignore[attr-defined]
    for trace_id in trace_ids.values():
        mine = {s.name: s for s in spans if s.trace_id.hex() == trace_id}  # type: ignore[attr-defined]
        assert set(mine) == {"InferRequest", "simple", "compute"}
        root, model, compute = mine["InferRequest"], mine["simple"], mine["compute"]
        assert root.parent_span_id.hex() == parent_span  # type: ignore[attr-defined]
        assert model.parent_span_id == root.span_id  # type: ignore[attr-defined]
        assert compute.parent_span_id == model.span_id  # type: ignore[attr-defined]
        events = [e.name for e in model.events]  # type: ignore[attr-defined]
        assert events == ["REQUEST_START", "QUEUE_START", "REQUEST_END"]
        assert [e.name for e in compute.events] == CORE[2:6]  # type: ignore[attr-defined]
        assert root.start_time_unix_nano <= model.start_time_unix_nano  # type: ignore[attr-defined]
        assert model.end_time_unix_nano <= root.end_time_unix_nano  # type: ignore[attr-defined]
