"""HTTP/REST against a real server process, driven by the real ``tritonclient.http``."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import zlib

import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException

from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_url)


def _simple_inputs(
    a: np.ndarray, b: np.ndarray, binary: tuple[bool, bool] = (True, True), dtype: str = "INT32"
) -> list[httpclient.InferInput]:
    inputs = []
    for name, value, is_binary in (("INPUT0", a, binary[0]), ("INPUT1", b, binary[1])):
        tensor = httpclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value, binary_data=is_binary)
        inputs.append(tensor)
    return inputs


def _raw_post(
    server: ServerProcess,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(server.http_url, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _assert_good_request(client: httpclient.InferenceServerClient) -> None:
    """After any bad request, the server still serves a good one."""
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    result = client.infer("simple", _simple_inputs(a, a))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)


# -- health, metadata, config -------------------------------------------------------


def test_health_and_server_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "naiad"
    # Only extensions that really work are announced.
    assert set(metadata["extensions"]) == {
        "classification",
        "model_configuration",
        "binary_tensor_data",
        "parameters",
        "statistics",
        "schedule_policy",
        "trace",
        "logging",
    }


def test_model_metadata_reports_batch_dimension(client: httpclient.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("simple")
    assert metadata["name"] == "simple"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("INPUT0", "INT32", [-1, 16]),
        ("INPUT1", "INT32", [-1, 16]),
    ]
    nobatch = client.get_model_metadata("simple_nobatch", "1")
    assert nobatch["inputs"][0]["shape"] == [16]


def test_model_config_is_triton_json(client: httpclient.InferenceServerClient) -> None:
    config = client.get_model_config("simple")
    assert config["name"] == "simple"
    assert config["max_batch_size"] == 8
    assert config["input"][0]["data_type"] == "TYPE_INT32"
    assert config["input"][0]["dims"] == [16]  # int64 as numbers, not strings
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["backend"] == "onnxruntime"
    assert config["batch_input"] == []  # defaults are printed too


def test_auto_complete_fills_missing_config(client: httpclient.InferenceServerClient) -> None:
    config = client.get_model_config("mlp_autocomplete")
    assert config["max_batch_size"] == 4
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("INPUT0", "TYPE_FP32", [8])
    ]
    assert config["output"][0]["dims"] == [4]
    assert config["default_model_filename"] == "model.onnx"


def test_model_ready(client: httpclient.InferenceServerClient) -> None:
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "1")
    assert not client.is_model_ready("simple", "2")
    assert not client.is_model_ready("no_such_model")


# -- inference ----------------------------------------------------------------------


@pytest.mark.parametrize("binary", [(True, True), (True, False), (False, True), (False, False)])
def test_simple_add_sub_mixed_binary_and_json(
    client: httpclient.InferenceServerClient, binary: tuple[bool, bool]
) -> None:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=False),
    ]
    result = client.infer("simple", _simple_inputs(a, b, binary), outputs=outputs, request_id="r1")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response["id"] == "r1"
    assert response["model_version"] == "1"
    assert "parameters" in response["outputs"][0]  # binary_data_size
    assert "data" in response["outputs"][1]


def test_no_outputs_requested_returns_all(client: httpclient.InferenceServerClient) -> None:
    a = np.ones((8, 16), dtype=np.int32)
    result = client.infer("simple", _simple_inputs(a, a))
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["OUTPUT0", "OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), np.zeros((8, 16), np.int32))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_request_and_response_compression(
    client: httpclient.InferenceServerClient, algorithm: str
) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    result = client.infer(
        "simple",
        _simple_inputs(a, a),
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)


def test_response_is_compressed_on_the_wire(server: ServerProcess) -> None:
    body = json.dumps(
        {
            "inputs": [
                {"name": n, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
                for n in ("INPUT0", "INPUT1")
            ]
        }
    ).encode()
    status, headers, payload = _raw_post(
        server,
        "/v2/models/simple/infer",
        gzip.compress(body),
        {"Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
    )
    assert status == 200
    assert headers.get("content-encoding") == "gzip"
    doc = json.loads(gzip.decompress(payload))
    assert doc["outputs"][0]["data"] == [2 * i for i in range(16)]


def test_bytes_add_sub_with_decimal_strings(client: httpclient.InferenceServerClient) -> None:
    a = np.array([[str(i).encode() for i in range(16)]], dtype=np.object_)
    b = np.array([[b"1"] * 16], dtype=np.object_)
    for binary in ((True, True), (False, False)):
        result = client.infer("simple_string", _simple_inputs(a, b, binary, "BYTES"))
        assert [int(x) for x in result.as_numpy("OUTPUT0").reshape(-1)] == [
            i + 1 for i in range(16)
        ]
        assert [int(x) for x in result.as_numpy("OUTPUT1").reshape(-1)] == [
            i - 1 for i in range(16)
        ]


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("FP16", np.array([[0.5, -1.25, 3.0]], dtype=np.float16)),
        ("BF16", np.array([[0.5, -1.25, 3.0]], dtype=ml_dtypes.bfloat16)),
        ("BOOL", np.array([[True, False, True]], dtype=np.bool_)),
        ("INT8", np.array([[-128, 0, 127]], dtype=np.int8)),
        ("UINT64", np.array([[0, 2**63, 2**64 - 1]], dtype=np.uint64)),
        ("FP64", np.array([[1e-300, -2.5, 1e300]], dtype=np.float64)),
    ],
)
def test_identity_types_round_trip(
    client: httpclient.InferenceServerClient, datatype: str, values: np.ndarray
) -> None:
    tensor = httpclient.InferInput("INPUT0", list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=True)
    result = client.infer(f"identity_{datatype.lower()}", [tensor])
    out = result.as_numpy("OUTPUT0")
    assert out.dtype == values.dtype
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("datatype", ["BOOL", "INT8", "UINT64", "FP64"])
def test_identity_types_as_json(client: httpclient.InferenceServerClient, datatype: str) -> None:
    values = {
        "BOOL": np.array([[True, False]]),
        "INT8": np.array([[-5, 7]], dtype=np.int8),
        "UINT64": np.array([[1, 2**64 - 1]], dtype=np.uint64),
        "FP64": np.array([[0.1, -3.5]], dtype=np.float64),
    }[datatype]
    tensor = httpclient.InferInput("INPUT0", list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=False)
    output = httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)
    result = client.infer(f"identity_{datatype.lower()}", [tensor], outputs=[output])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), values)


def test_bytes_with_nul_round_trip_through_onnx(client: httpclient.InferenceServerClient) -> None:
    values = np.array(
        [[b"\x00\x01\x02", b"a\x00b", b"", "na\u00efve \u65e5\u672c".encode()]], dtype=np.object_
    )
    tensor = httpclient.InferInput("INPUT0", [1, 4], "BYTES")
    tensor.set_data_from_numpy(values, binary_data=True)
    result = client.infer("identity_bytes", [tensor])
    assert list(result.as_numpy("OUTPUT0").reshape(-1)) == list(values.reshape(-1))


def test_non_utf8_bytes_into_onnx_string_tensor_is_a_clear_error(
    client: httpclient.InferenceServerClient,
) -> None:
    # ONNX Runtime's Python API carries string tensors as UTF-8 text only.
    tensor = httpclient.InferInput("INPUT0", [1, 2], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"\x00\xff\xfe", b"ok"]], dtype=np.object_))
    _expect_error(
        client, "400", "not valid UTF-8", lambda: client.infer("identity_bytes", [tensor])
    )


def test_classification_returns_score_index_label(client: httpclient.InferenceServerClient) -> None:
    scores = np.array([[0.1, 0.7, 0.05, 0.9, 0.2], [5.0, 1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    tensor = httpclient.InferInput("INPUT0", [2, 5], "FP32")
    tensor.set_data_from_numpy(scores)
    for binary in (True, False):
        output = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary, class_count=2)
        result = client.infer("classifier", [tensor], outputs=[output])
        top = result.as_numpy("OUTPUT0")
        assert top.shape == (2, 2)
        rows = [[x.decode() if isinstance(x, bytes) else x for x in row] for row in top]
        assert rows == [
            ["0.900000:3:fish", "0.700000:1:dog"],
            ["5.000000:0:cat", "4.000000:4:frog"],
        ]


def test_raw_binary_body_for_single_input_model(server: ServerProcess) -> None:
    values = np.array([1.5, -2.0, 3.25, 4.0, 8.5], dtype=np.float32)
    status, headers, payload = _raw_post(
        server,
        "/v2/models/classifier/infer",
        values.tobytes(),
        {"Inference-Header-Content-Length": "0"},
    )
    assert status == 200, payload
    header_length = int(headers["inference-header-content-length"])
    doc = json.loads(payload[:header_length])
    assert doc["outputs"][0]["shape"] == [1, 5]
    out = np.frombuffer(payload[header_length:], dtype=np.float32)
    np.testing.assert_array_equal(out, values)


def test_asyncio_client(server: ServerProcess) -> None:
    async def run() -> list[np.ndarray]:
        client = aiohttpclient.InferenceServerClient(server.http_url)
        try:
            assert await client.is_server_ready()
            metadata = await client.get_model_metadata("simple")
            assert metadata["name"] == "simple"
            tasks = []
            for i in range(8):
                a = np.full((1, 16), i, dtype=np.int32)
                inputs = [
                    aiohttpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")
                ]
                for tensor in inputs:
                    tensor.set_data_from_numpy(a)
                tasks.append(client.infer("simple", inputs))
            results = await asyncio.gather(*tasks)
            return [r.as_numpy("OUTPUT0") for r in results]
        finally:
            await client.close()

    outputs = asyncio.run(run())
    for i, out in enumerate(outputs):
        np.testing.assert_array_equal(out, np.full((1, 16), 2 * i, dtype=np.int32))


# -- bad input: a clear error, the right status, and the server keeps serving ------


def _expect_error(client: httpclient.InferenceServerClient, status: str, text: str, call) -> None:
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == status, info.value
    assert text in info.value.message(), info.value.message()
    _assert_good_request(client)


def test_unknown_model_and_version(client: httpclient.InferenceServerClient) -> None:
    a = np.zeros((1, 16), dtype=np.int32)
    _expect_error(
        client,
        "404",
        "Request for unknown model: 'x' is not found",
        lambda: client.infer("x", _simple_inputs(a, a)),
    )
    _expect_error(
        client,
        "404",
        "Request for unknown model: 'simple' version 3 is not found",
        lambda: client.infer("simple", _simple_inputs(a, a), model_version="3"),
    )
    _expect_error(
        client,
        "404",
        "Request for unknown model: 'x' is not found",
        lambda: client.get_model_metadata("x"),
    )


def test_wrong_datatype(client: httpclient.InferenceServerClient) -> None:
    a = np.zeros((1, 16), dtype=np.float32)
    _expect_error(
        client,
        "400",
        "inference input 'INPUT0' data-type is 'FP32', but model 'simple' expects 'INT32'",
        lambda: client.infer("simple", _simple_inputs(a, a, dtype="FP32")),
    )


def test_wrong_shape(client: httpclient.InferenceServerClient) -> None:
    a = np.zeros((1, 15), dtype=np.int32)
    b = np.zeros((1, 16), dtype=np.int32)
    _expect_error(
        client,
        "400",
        "unexpected shape for input 'INPUT0' for model 'simple'. Expected [-1,16], got [1,15]",
        lambda: client.infer("simple", _simple_inputs(a, b)),
    )


def test_missing_and_unknown_inputs(client: httpclient.InferenceServerClient) -> None:
    a = np.zeros((1, 16), dtype=np.int32)
    only_one = _simple_inputs(a, a)[:1]
    _expect_error(
        client,
        "400",
        "expected 2 inputs but got 1 inputs for model 'simple'. Got input(s) ['INPUT0'], "
        "but missing required input(s) ['INPUT1']. Please provide all required input(s).",
        lambda: client.infer("simple", only_one),
    )
    extra = httpclient.InferInput("INPUT9", [1, 16], "INT32")
    extra.set_data_from_numpy(a)
    _expect_error(
        client,
        "400",
        "unexpected inference input 'INPUT9' for model 'simple'",
        lambda: client.infer("simple", [*only_one, extra]),
    )
    _expect_error(
        client,
        "400",
        "unexpected inference output 'NOPE' for model 'simple'",
        lambda: client.infer(
            "simple", _simple_inputs(a, a), outputs=[httpclient.InferRequestedOutput("NOPE")]
        ),
    )


def test_batch_above_max_batch_size(client: httpclient.InferenceServerClient) -> None:
    a = np.zeros((9, 16), dtype=np.int32)
    _expect_error(
        client,
        "400",
        "inference request batch-size must be <= 8 for 'simple'",
        lambda: client.infer("simple", _simple_inputs(a, a)),
    )


def _simple_body(data0: object, shape0: list[int], **extra: object) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "shape": shape0, "datatype": "INT32", "data": data0},
                {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [0] * 16},
            ],
            **extra,
        }
    ).encode()


def test_json_element_count_mismatch(
    server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    status, _, payload = _raw_post(
        server, "/v2/models/simple/infer", _simple_body([1] * 15, [1, 16])
    )
    assert status == 400
    assert "unexpected number of elements 15, expecting 16" in json.loads(payload)["error"]
    _assert_good_request(client)


def test_binary_byte_size_mismatch(
    server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1, 16],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": 60},
                },
                {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [0] * 16},
            ]
        }
    ).encode()
    status, _, payload = _raw_post(
        server,
        "/v2/models/simple/infer",
        header + b"\x00" * 60,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 400
    assert json.loads(payload)["error"] == (
        "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for model "
        "'simple'. Expected 64, got 60"
    )
    _assert_good_request(client)


@pytest.mark.parametrize(
    ("body", "headers", "status", "text"),
    [
        (b"{not json", {}, 400, "failed to parse the request JSON buffer"),
        (b"[" * 10000 + b"]" * 10000, {}, 400, "failed to parse the request JSON buffer"),
        (
            json.dumps({"inputs": [], "parameters": {"a": {"b": {"c": 1}}}}).encode()[:0]
            + b'{"inputs":[],"x":'
            + b'{"a":' * 150
            + b"1"
            + b"}" * 150
            + b"}",
            {},
            400,
            "JSON nesting depth exceeds maximum allowed limit (100)",
        ),
        (b'{"outputs": []}', {}, 400, "Unable to parse 'inputs'"),
        (
            b"{}",
            {"Inference-Header-Content-Length": "100"},
            400,
            "inference header size should be in range (0, 2), got: 100",
        ),
        (_simple_body([0] * 16, [2**40, 2**40]), {}, 400, "overflows int64"),
        (_simple_body([0] * 16, [1, -16]), {}, 400, "Unable to parse 'shape'"),
        (b"{}", {"Content-Encoding": "br"}, 501, "Unsupported compression type"),
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400, "failed to decompress"),
    ],
    ids=[
        "malformed-json",
        "nested-10000",
        "nested-150-objects",
        "missing-inputs",
        "header-length-beyond-body",
        "shape-overflow",
        "negative-dim",
        "unknown-encoding",
        "corrupt-gzip",
    ],
)
def test_malformed_requests(
    server: ServerProcess,
    client: httpclient.InferenceServerClient,
    body: bytes,
    headers: dict[str, str],
    status: int,
    text: str,
) -> None:
    got_status, got_headers, payload = _raw_post(server, "/v2/models/simple/infer", body, headers)
    assert got_status == status, payload
    assert text in json.loads(payload)["error"]
    if status == 501:
        assert got_headers.get("accept-encoding") == "gzip, deflate"
    _assert_good_request(client)


def test_unknown_route_and_wrong_method(
    server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    status, _, payload = _raw_post(server, "/v2/nothing/here", b"", method="GET")
    assert (status, json.loads(payload)) == (404, {"error": "Not Found"})
    status, _, payload = _raw_post(server, "/v2/models/simple/infer", b"", method="GET")
    assert (status, json.loads(payload)) == (405, {"error": "Method Not Allowed"})
    status, _, payload = _raw_post(server, "/v2/models/simple", b"{}", method="POST")
    assert status == 405
    _assert_good_request(client)


def test_health_false_is_400_with_empty_body(server: ServerProcess) -> None:
    status, _, payload = _raw_post(server, "/v2/models/nope/ready", b"", method="GET")
    assert status == 400
    status, _, payload = _raw_post(server, "/v2/health/live", b"", method="GET")
    assert (status, payload) == (200, b"")


def test_body_size_limit_also_after_decompression(tmp_path, standard_repository) -> None:
    with ServerProcess([standard_repository], "--http-max-input-size=4096") as small:
        client = httpclient.InferenceServerClient(small.http_url)
        big = _simple_body([0] * 16, [1, 16], padding="x" * 5000)
        status, _, payload = _raw_post(small, "/v2/models/simple/infer", big)
        assert status == 400
        assert "exceeds the maximum allowed value of 4096" in json.loads(payload)["error"]
        # A small gzip body that expands past the limit (a "gzip bomb") is refused too.
        bomb = gzip.compress(b" " * 3_000_000)
        assert len(bomb) < 4096
        status, _, payload = _raw_post(
            small, "/v2/models/simple/infer", bomb, {"Content-Encoding": "gzip"}
        )
        assert status == 400
        assert "exceeds the maximum allowed value of 4096" in json.loads(payload)["error"]
        deflated = zlib.compress(_simple_body([1] * 16, [1, 16]))
        status, _, payload = _raw_post(
            small, "/v2/models/simple/infer", deflated, {"Content-Encoding": "deflate"}
        )
        assert status == 200, payload
        _assert_good_request(client)


def test_chunked_request_body(
    server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    body = _simple_body(list(range(16)), [1, 16])
    connection = http.client.HTTPConnection(server.http_url, timeout=30)
    try:
        chunks = (body[i : i + 7] for i in range(0, len(body), 7))
        connection.request("POST", "/v2/models/simple/infer", body=chunks, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["outputs"][0]["data"] == list(range(16))
    finally:
        connection.close()
