"""The gRPC frontend end to end: a real server process driven by the real ``tritonclient``.

Covers health, metadata, config, inference for every wire type, classification,
compression, hand-built typed-contents requests, unserved RPCs, and the status code and
Triton wording of each bad request (always followed by a good one, so a failure never
leaves the server broken).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_url) as triton:
        yield triton


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _input(name: str, array: np.ndarray, datatype: str | None = None) -> grpcclient.InferInput:
    datatype = datatype or ("BYTES" if array.dtype == np.object_ else None)
    if datatype is None:
        from tritonclient.utils import np_to_triton_dtype

        datatype = np_to_triton_dtype(array.dtype)
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _simple_inputs(batch: int = 1) -> tuple[np.ndarray, np.ndarray, list[grpcclient.InferInput]]:
    a = np.arange(batch * 16, dtype=np.int32).reshape(batch, 16)
    b = np.full((batch, 16), 3, dtype=np.int32)
    return a, b, [_input("INPUT0", a), _input("INPUT1", b)]


def _assert_simple_works(client: grpcclient.InferenceServerClient) -> None:
    a, b, inputs = _simple_inputs()
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


# -- health, metadata, config ----------------------------------------------------------


def test_server_live_and_ready(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()


def test_health_check_serving(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_server_metadata(client: grpcclient.InferenceServerClient) -> None:
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "naiad"
    assert metadata["version"]
    assert "classification" in metadata["extensions"]


@pytest.mark.parametrize(("model", "shape"), [("simple", ["-1", "16"]), ("simple_nobatch", ["16"])])
def test_model_metadata(
    client: grpcclient.InferenceServerClient, model: str, shape: list[str]
) -> None:
    # as_json goes through MessageToJson, which prints int64 values as strings.
    metadata = client.get_model_metadata(model, as_json=True)
    assert metadata["name"] == model
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert [t["name"] for t in metadata["inputs"]] == ["INPUT0", "INPUT1"]
    assert [t["name"] for t in metadata["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    for tensor in metadata["inputs"] + metadata["outputs"]:
        assert tensor["datatype"] == "INT32"
        assert tensor["shape"] == shape
    proto = client.get_model_metadata(model, model_version="1")
    assert list(proto.inputs[0].shape) == [int(d) for d in shape]


def test_model_config(client: grpcclient.InferenceServerClient) -> None:
    config = client.get_model_config("simple", as_json=True)["config"]
    assert config["name"] == "simple"
    assert config["max_batch_size"] == 8
    assert [t["name"] for t in config["input"]] == ["INPUT0", "INPUT1"]
    assert config["input"][0]["data_type"] == "TYPE_INT32"
    assert config["input"][0]["dims"] == ["16"]
    proto = client.get_model_config("simple").config
    assert proto.max_batch_size == 8
    assert [t.name for t in proto.output] == ["OUTPUT0", "OUTPUT1"]


def test_model_config_autocompleted(client: grpcclient.InferenceServerClient) -> None:
    config = client.get_model_config("mlp_autocomplete").config
    assert config.max_batch_size == 4
    assert [(t.name, list(t.dims)) for t in config.input] == [("INPUT0", [8])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("OUTPUT0", [4])]


def test_model_ready(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "1")
    assert not client.is_model_ready("simple", "7")
    assert not client.is_model_ready("no_such_model")


def test_unknown_model_metadata_is_not_found(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("no_such_model")
    assert error.value.status() == "StatusCode.NOT_FOUND"
    assert error.value.message() == "Request for unknown model: 'no_such_model' is not found"


# -- inference -----------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("requested", [None, ["OUTPUT0", "OUTPUT1"], ["OUTPUT1"]])
def test_infer_simple(
    client: grpcclient.InferenceServerClient, batch: int, requested: list[str] | None
) -> None:
    a, b, inputs = _simple_inputs(batch)
    outputs = None if requested is None else [grpcclient.InferRequestedOutput(n) for n in requested]
    result = client.infer("simple", inputs, outputs=outputs, request_id=f"req-{batch}")
    response = result.get_response()
    assert response.model_name == "simple"
    assert response.model_version == "1"
    assert response.id == f"req-{batch}"
    names = requested or ["OUTPUT0", "OUTPUT1"]
    assert [o.name for o in response.outputs] == names
    assert len(response.raw_output_contents) == len(names)
    expected = {"OUTPUT0": a + b, "OUTPUT1": a - b}
    for name in names:
        out = result.as_numpy(name)
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, expected[name])


def test_infer_simple_nobatch(client: grpcclient.InferenceServerClient) -> None:
    a = np.arange(16, dtype=np.int32)
    result = client.infer("simple_nobatch", [_input("INPUT0", a), _input("INPUT1", a)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)
    assert list(result.get_output("OUTPUT1").shape) == [16]


def test_infer_simple_string(client: grpcclient.InferenceServerClient) -> None:
    a = np.array([str(i).encode() for i in range(16)], dtype=np.object_).reshape(1, 16)
    b = np.array([b"1"] * 16, dtype=np.object_).reshape(1, 16)
    result = client.infer("simple_string", [_input("INPUT0", a), _input("INPUT1", b)])
    assert [int(x) for x in result.as_numpy("OUTPUT0").reshape(-1)] == [i + 1 for i in range(16)]
    assert [int(x) for x in result.as_numpy("OUTPUT1").reshape(-1)] == [i - 1 for i in range(16)]


_IDENTITY_DATA: dict[str, np.ndarray] = {
    "FP16": np.array([[0.5, -1.25, 65504.0]], dtype=np.float16),
    "BF16": np.array([[1.0, -2.5, 3.0e38]], dtype=ml_dtypes.bfloat16),
    "BOOL": np.array([[True, False, True]]),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "UINT64": np.array([[0, 1, 2**64 - 1]], dtype=np.uint64),
    "FP64": np.array([[1e-300, -0.0, 1e300]], dtype=np.float64),
}


@pytest.mark.parametrize("datatype", list(_IDENTITY_DATA))
def test_infer_identity_types(client: grpcclient.InferenceServerClient, datatype: str) -> None:
    data = _IDENTITY_DATA[datatype]
    result = client.infer(f"identity_{datatype.lower()}", [_input("INPUT0", data, datatype)])
    out = result.as_numpy("OUTPUT0")
    assert result.get_output("OUTPUT0").datatype == datatype
    assert out.dtype == data.dtype
    assert out.tobytes() == data.tobytes()


def test_infer_identity_bytes_exact(client: grpcclient.InferenceServerClient) -> None:
    data = np.array([[b"a\x00b", b"\x00", b"", "\u00e9\u4e2d".encode()]], dtype=np.object_)
    result = client.infer("identity_bytes", [_input("INPUT0", data)])
    assert result.as_numpy("OUTPUT0").tolist() == data.tolist()


def test_infer_non_utf8_bytes(client: grpcclient.InferenceServerClient) -> None:
    # The gRPC codec carries any bytes (see the unit tests), but ONNX Runtime string
    # tensors are Python str, so the ORT backend refuses non-UTF-8 elements cleanly.
    data = np.array([[b"\x00\xff\xfe", b"a\x00b"]], dtype=np.object_)
    with pytest.raises(InferenceServerException) as error:
        client.infer("identity_bytes", [_input("INPUT0", data)])
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "not valid UTF-8" in error.value.message()
    _assert_simple_works(client)


def test_classification(client: grpcclient.InferenceServerClient) -> None:
    scores = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 1.0, 0.5, 2.0, 0.0]], dtype=np.float32)
    result = client.infer(
        "classifier",
        [_input("INPUT0", scores)],
        outputs=[grpcclient.InferRequestedOutput("OUTPUT0", class_count=2)],
    )
    assert result.get_output("OUTPUT0").datatype == "BYTES"
    assert result.as_numpy("OUTPUT0").tolist() == [
        [b"5.000000:4:frog", b"4.000000:3:fish"],
        [b"5.000000:0:cat", b"2.000000:3:fish"],
    ]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compression(client: grpcclient.InferenceServerClient, algorithm: str) -> None:
    # Large, compressible tensors so the compressed path really carries data.
    a = np.ones((8, 16), dtype=np.int32)
    result = client.infer(
        "simple", [_input("INPUT0", a), _input("INPUT1", a)], compression_algorithm=algorithm
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)


def test_large_messages(client: grpcclient.InferenceServerClient) -> None:
    # Well past grpcio's default 4 MiB limits, which Triton's clients routinely exceed.
    data = np.random.default_rng(0).standard_normal((1, 6 * 2**20)).astype(np.float32)
    result = client.infer("identity_fp32", [_input("INPUT0", data)])
    assert result.as_numpy("OUTPUT0").tobytes() == data.tobytes()


def test_request_parameters(client: grpcclient.InferenceServerClient) -> None:
    _, _, inputs = _simple_inputs()
    result = client.infer(
        "simple", inputs, parameters={"custom_int": 3, "custom_str": "x", "custom_bool": True}
    )
    assert result.as_numpy("OUTPUT0") is not None


def test_async_client(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with aiogrpcclient.InferenceServerClient(server.grpc_url) as triton:
            assert await triton.is_server_live()
            assert await triton.is_server_ready()
            assert await triton.is_model_ready("simple")
            metadata = await triton.get_model_metadata("simple_nobatch")
            assert list(metadata.inputs[0].shape) == [16]
            config = await triton.get_model_config("simple")
            assert config.config.max_batch_size == 8
            a, b, inputs = _simple_inputs(4)
            results = await asyncio.gather(*(triton.infer("simple", inputs) for _ in range(8)))
            for result in results:
                np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
            with pytest.raises(InferenceServerException) as error:
                await triton.infer("no_such_model", inputs)
            assert error.value.status() == "StatusCode.NOT_FOUND"

    asyncio.run(scenario())


# -- hand-built requests with typed contents ------------------------------------------


def _typed_request(
    model: str, datatype: str, shape: list[int], **contents: object
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(
        name="INPUT0", datatype=datatype, shape=shape, contents=pb.InferTensorContents(**contents)
    )
    return request


def test_typed_contents(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = pb.ModelInferRequest(model_name="simple", id="typed")
    for name, values in (("INPUT0", range(16)), ("INPUT1", [1] * 16)):
        request.inputs.add(
            name=name,
            datatype="INT32",
            shape=[1, 16],
            contents=pb.InferTensorContents(int_contents=values),
        )
    response = stub.ModelInfer(request)
    assert response.id == "typed"
    assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]
    total = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
    np.testing.assert_array_equal(total, np.arange(16) + 1)


@pytest.mark.parametrize(
    ("model", "datatype", "contents", "expected"),
    [
        (
            "identity_int8",
            "INT8",
            {"int_contents": [-128, 5, 127]},
            np.array([-128, 5, 127], np.int8),
        ),
        (
            "identity_uint64",
            "UINT64",
            {"uint64_contents": [2**64 - 1]},
            np.array([2**64 - 1], np.uint64),
        ),
        ("identity_bool", "BOOL", {"bool_contents": [True, False]}, np.array([True, False])),
        ("identity_fp64", "FP64", {"fp64_contents": [0.25, -1e300]}, np.array([0.25, -1e300])),
        ("identity_fp32", "FP32", {"fp32_contents": [1.5]}, np.array([1.5], np.float32)),
    ],
)
def test_typed_contents_types(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    model: str,
    datatype: str,
    contents: dict[str, list[object]],
    expected: np.ndarray,
) -> None:
    request = _typed_request(model, datatype, [1, len(expected)], **contents)
    response = stub.ModelInfer(request)
    out = np.frombuffer(response.raw_output_contents[0], dtype=expected.dtype)
    np.testing.assert_array_equal(out, expected)


def test_typed_bytes_contents(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    values = [b"\x00a", b"abc"]
    response = stub.ModelInfer(
        _typed_request("identity_bytes", "BYTES", [1, 2], bytes_contents=values)
    )
    raw = response.raw_output_contents[0]
    assert raw == b"".join(len(v).to_bytes(4, "little") + v for v in values)


def _stub_error(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, call: Callable[[], object]
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value


@pytest.mark.parametrize(
    ("contents", "shape", "message"),
    [
        (
            {"fp32_contents": [1.0] * 16},
            [1, 16],
            "unexpected explicit tensor data for input tensor 'INPUT0' for model 'simple' of "
            "type 'FP32', expected datatype 'INT32'",
        ),
        (
            {"int_contents": [1] * 15},
            [1, 16],
            "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for model "
            "'simple'. Expected 64, got 60",
        ),
        (
            {"int_contents": [1] * 16, "int64_contents": [1] * 16},
            [1, 16],
            "unexpected explicit tensor data for input tensor 'INPUT0' for model 'simple', "
            "binary data was already supplied.",
        ),
    ],
)
def test_typed_contents_errors(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    client: grpcclient.InferenceServerClient,
    contents: dict[str, list[object]],
    shape: list[int],
    message: str,
) -> None:
    request = _typed_request("simple", "INT32", shape, **contents)
    request.inputs.add(
        name="INPUT1",
        datatype="INT32",
        shape=[1, 16],
        contents=pb.InferTensorContents(int_contents=[1] * 16),
    )
    error = _stub_error(stub, lambda: stub.ModelInfer(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message
    _assert_simple_works(client)


def test_mixed_raw_and_typed_contents(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, client: grpcclient.InferenceServerClient
) -> None:
    request = _typed_request("simple", "INT32", [1, 16], int_contents=[1] * 16)
    request.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 16])
    request.raw_input_contents.append(np.ones(16, np.int32).tobytes())
    error = _stub_error(stub, lambda: stub.ModelInfer(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "contents field must not be specified when using raw_input_contents for 'INPUT0' "
        "for model 'simple'"
    )
    _assert_simple_works(client)


def test_missing_raw_contents(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, client: grpcclient.InferenceServerClient
) -> None:
    request = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
    request.raw_input_contents.append(np.ones(16, np.int32).tobytes())
    error = _stub_error(stub, lambda: stub.ModelInfer(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "unable to find data for input tensor 'INPUT1' for model 'simple' in request."
    )
    _assert_simple_works(client)


def test_reserved_parameter_and_unknown_datatype(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, client: grpcclient.InferenceServerClient
) -> None:
    request = _typed_request("simple", "INT32", [1, 16], int_contents=[1] * 16)
    request.parameters["triton_secret"].bool_param = True
    error = _stub_error(stub, lambda: stub.ModelInfer(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(
        "parameter keys starting with 'triton_' are reserved for Triton usage."
    )
    request = _typed_request("simple", "FLOAT7", [1, 16], int_contents=[1] * 16)
    error = _stub_error(stub, lambda: stub.ModelInfer(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid datatype 'FLOAT7'" in error.details()
    _assert_simple_works(client)


# -- RPCs Naiad does not serve --------------------------------------------------------


def test_shared_memory_queries_succeed(client: grpcclient.InferenceServerClient) -> None:
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory()
    assert not client.get_system_shared_memory_status().regions
    assert not client.get_cuda_shared_memory_status().regions


def test_shared_memory_registration_is_off_by_default(
    client: grpcclient.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.register_system_shared_memory("r", "/r", 16)
    assert error.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "Client shared memory is disabled" in error.value.message()


def test_trace_and_log_settings_are_served(client: grpcclient.InferenceServerClient) -> None:
    # Both extensions answer with their settings (tests/e2e/test_trace.py and
    # test_logging.py cover them in depth).
    trace = client.get_trace_settings(as_json=True)["settings"]
    assert trace["trace_mode"]["value"] == ["triton"]
    logs = client.get_log_settings(as_json=True)["settings"]
    assert logs["log_info"]["bool_param"] is True


def test_stream_infer_of_a_plain_model(client: grpcclient.InferenceServerClient) -> None:
    # A non-decoupled model streams exactly one final response; an error inside the
    # stream comes back in it and the stream goes on.
    results: list[tuple[Any, Any]] = []
    done = threading.Event()

    def callback(result: Any, error: Any) -> None:
        results.append((result, error))
        if len(results) == 2:
            done.set()

    a, b, inputs = _simple_inputs()
    client.start_stream(callback=callback)
    try:
        client.async_stream_infer("no_such_model", inputs, request_id="bad")
        client.async_stream_infer("simple", inputs, request_id="good")
        assert done.wait(10)
    finally:
        client.stop_stream()
    errors = [str(error) for _, error in results if error is not None]
    assert len(errors) == 1 and "no_such_model" in errors[0]
    (result,) = [result for result, error in results if error is None]
    response = result.get_response()
    assert response.id == "good" and response.parameters["triton_final_response"].bool_param
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


# -- bad requests: status code and Triton's wording, then a good request --------------


def _bad_datatype() -> dict[str, object]:
    a = np.ones((1, 16), dtype=np.float32)
    b = np.ones((1, 16), dtype=np.int32)
    return {"inputs": [_input("INPUT0", a), _input("INPUT1", b)]}


def _bad_shape() -> dict[str, object]:
    a = np.ones((1, 15), dtype=np.int32)
    return {"inputs": [_input("INPUT0", a), _input("INPUT1", a)]}


def _with_shape(array: np.ndarray, shape: list[int], name: str = "INPUT0") -> grpcclient.InferInput:
    tensor = _input(name, array)
    tensor.set_shape(shape)
    return tensor


_BAD_REQUESTS: dict[str, tuple[Callable[[], dict[str, object]], str, str]] = {
    "unknown model": (
        lambda: {"model_name": "x", "inputs": _simple_inputs()[2]},
        "NOT_FOUND",
        "Request for unknown model: 'x' is not found",
    ),
    "unknown version": (
        lambda: {"model_version": "7", "inputs": _simple_inputs()[2]},
        "NOT_FOUND",
        "Request for unknown model: 'simple' version 7 is not found",
    ),
    "non-numeric version": (
        lambda: {"model_version": "abc", "inputs": _simple_inputs()[2]},
        "INVALID_ARGUMENT",
        "failed to get model version from specified version string 'abc' (details: stol), "
        "version should be an integral value > 0",
    ),
    "wrong datatype": (
        _bad_datatype,
        "INVALID_ARGUMENT",
        "[request id: <id_unknown>] inference input 'INPUT0' data-type is 'FP32', but model "
        "'simple' expects 'INT32'",
    ),
    "wrong shape": (
        _bad_shape,
        "INVALID_ARGUMENT",
        "[request id: <id_unknown>] unexpected shape for input 'INPUT0' for model 'simple'. "
        "Expected [-1,16], got [1,15]",
    ),
    "missing input": (
        lambda: {"inputs": _simple_inputs()[2][:1]},
        "INVALID_ARGUMENT",
        "[request id: <id_unknown>] expected 2 inputs but got 1 inputs for model 'simple'. "
        "Got input(s) ['INPUT0'], but missing required input(s) ['INPUT1']. Please provide "
        "all required input(s).",
    ),
    "unknown input": (
        lambda: {"inputs": [_simple_inputs()[2][0], _input("INPUTX", np.ones((1, 16), np.int32))]},
        "INVALID_ARGUMENT",
        "unexpected inference input 'INPUTX' for model 'simple'",
    ),
    "batch too large": (
        lambda: {"inputs": _simple_inputs(9)[2]},
        "INVALID_ARGUMENT",
        "[request id: <id_unknown>] inference request batch-size must be <= 8 for 'simple'",
    ),
    "raw byte size mismatch": (
        lambda: {
            "inputs": [
                _with_shape(np.ones((1, 15), np.int32), [1, 16]),
                _simple_inputs()[2][1],
            ],
            "request_id": "r1",
        },
        "INVALID_ARGUMENT",
        "[request id: r1] input byte size mismatch for input 'INPUT0' for model 'simple'. "
        "Expected 64, got 60",
    ),
    "element count overflow": (
        lambda: {
            "inputs": [
                _with_shape(np.ones((1, 16), np.int32), [2**40, 2**40]),
                _simple_inputs()[2][1],
            ]
        },
        "INVALID_ARGUMENT",
        "[request id: <id_unknown>] input 'INPUT0' for model 'simple' has an invalid shape "
        "[1099511627776,1099511627776]: element count overflows int64",
    ),
    "too few strings": (
        lambda: {
            "model_name": "simple_string",
            "inputs": [
                _with_shape(np.array([[b"1"] * 14], np.object_), [1, 16]),
                _input("INPUT1", np.array([[b"1"] * 16], np.object_)),
            ],
        },
        "INVALID_ARGUMENT",
        "[request id: <id_unknown>] expected 16 string elements for inference input 'INPUT0' "
        "for model 'simple_string', got 14",
    ),
    "too many strings": (
        lambda: {
            "model_name": "simple_string",
            "inputs": [
                _with_shape(np.array([[b"1"] * 18], np.object_), [1, 16]),
                _input("INPUT1", np.array([[b"1"] * 16], np.object_)),
            ],
        },
        "INVALID_ARGUMENT",
        "[request id: <id_unknown>] unexpected number of string elements 17 for inference "
        "input 'INPUT0' for model 'simple_string', expecting 16",
    ),
    "unknown output": (
        lambda: {
            "inputs": _simple_inputs()[2],
            "outputs": [grpcclient.InferRequestedOutput("OUTPUT9")],
        },
        "INVALID_ARGUMENT",
        "unexpected inference output 'OUTPUT9' for model 'simple'",
    ),
}


@pytest.mark.parametrize("case", list(_BAD_REQUESTS))
def test_bad_request(client: grpcclient.InferenceServerClient, case: str) -> None:
    build, status, message = _BAD_REQUESTS[case]
    arguments = {"model_name": "simple", **build()}
    with pytest.raises(InferenceServerException) as error:
        client.infer(**arguments)  # type: ignore[arg-type]
    assert error.value.status() == f"StatusCode.{status}"
    assert error.value.message() == message
    _assert_simple_works(client)
