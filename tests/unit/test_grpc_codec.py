"""The gRPC codec on its own: protobuf messages to core requests and core responses back."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from naiad.errors import InvalidArgumentError, UnsupportedError
from naiad.frontends.grpc.codec import decode_infer_request, encode_infer_response
from naiad.frontends.grpc.wire import parse_infer_request, serialize_infer_response
from naiad.inference import InferenceResponse, InferOutput
from naiad.tensors import DataType, serialize_bytes


def _request(datatype: str, shape: list[int], raw: bytes | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", model_version="2", id="r")
    request.inputs.add(name="IN", datatype=datatype, shape=shape)
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


def _typed(datatype: str, shape: list[int], **contents: object) -> pb.ModelInferRequest:
    request = _request(datatype, shape)
    request.inputs[0].contents.CopyFrom(pb.InferTensorContents(**contents))
    return request


def _encode(response: InferenceResponse) -> pb.ModelInferResponse:
    """Encode as the server does, and parse back as a client would."""
    wire = serialize_infer_response(encode_infer_response(response))
    return pb.ModelInferResponse.FromString(wire)


def _error(request: pb.ModelInferRequest) -> str:
    with pytest.raises(InvalidArgumentError) as error:
        decode_infer_request(request)
    return error.value.message


def test_raw_fixed_size_input_is_a_view_of_the_message_bytes() -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    decoded = decode_infer_request(_request("FP32", [2, 3], data.tobytes()))
    assert (decoded.model_name, decoded.model_version, decoded.id) == ("m", "2", "r")
    assert decoded.outputs is None
    tensor = decoded.inputs[0]
    assert (tensor.name, tensor.datatype, tensor.shape) == ("IN", DataType.FP32, (2, 3))
    np.testing.assert_array_equal(tensor.data, data)


def test_raw_bf16_input() -> None:
    data = np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16)
    tensor = decode_infer_request(_request("BF16", [2], data.tobytes())).inputs[0]
    assert tensor.data.dtype == ml_dtypes.bfloat16
    assert tensor.data.tobytes() == data.tobytes()


def test_bytes_round_trip_is_exact() -> None:
    items = [b"\x00\xff\xfe", b"a\x00b", b""]
    array = np.array(items, dtype=np.object_)
    tensor = decode_infer_request(_request("BYTES", [3], serialize_bytes(array))).inputs[0]
    assert tensor.data.tolist() == items
    response = _encode(
        InferenceResponse("m", "1", "r", [InferOutput("OUT", DataType.BYTES, (3,), tensor.data)])
    )
    assert response.raw_output_contents[0] == serialize_bytes(array)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01\x00", "element byte size indicator exceeds the end of the buffer"),
        (b"\x09\x00\x00\x00abc", "string element 0 of inference input 'IN' for model 'm' exceeds"),
        (
            b"\x00\x00\x00\x00" * 3,
            "unexpected number of string elements 3 for inference input 'IN' for model 'm', "
            "expecting 2",
        ),
        (b"\x00\x00\x00\x00", "expected 2 string elements for inference input 'IN' for model 'm'"),
    ],
)
def test_malformed_bytes_input(raw: bytes, message: str) -> None:
    text = _error(_request("BYTES", [2], raw))
    assert text.startswith("[request id: r] ")
    assert message in text


def test_byte_size_mismatch_and_missing_data() -> None:
    assert _error(_request("INT32", [4], b"\x00" * 15)) == (
        "[request id: r] input byte size mismatch for input 'IN' for model 'm'. Expected 16, got 15"
    )
    # No raw and no typed data at all: an empty buffer, as Triton adds it.
    assert _error(_request("INT32", [4])).endswith("Expected 16, got 0")
    assert decode_infer_request(_request("INT32", [0])).inputs[0].data.shape == (0,)


def test_shape_checks() -> None:
    assert _error(_request("INT32", [-1, 4], b"")) == (
        "[request id: r] All input dimensions should be specified for input 'IN' for model "
        "'m', got [-1,4]"
    )
    assert "element count overflows int64" in _error(_request("INT8", [2**40, 2**40], b""))
    # The element count fits but the byte size does not.
    assert "byte size overflows int64" in _error(_request("FP64", [2**31, 2**31], b""))


def test_unknown_datatype() -> None:
    assert _error(_request("FP8", [1], b"\x00")) == (
        "[request id: r] invalid datatype 'FP8' for inference input 'IN' for model 'm'"
    )


@pytest.mark.parametrize(
    ("datatype", "contents", "expected"),
    [
        ("INT8", {"int_contents": [1, -1, 300]}, np.array([1, -1, 44], np.int8)),
        ("INT16", {"int_contents": [-2, 70000]}, np.array([-2, 4464], np.int16)),
        ("UINT8", {"uint_contents": [255, 256]}, np.array([255, 0], np.uint8)),
        ("UINT16", {"uint_contents": [7]}, np.array([7], np.uint16)),
        ("UINT32", {"uint_contents": [2**32 - 1]}, np.array([2**32 - 1], np.uint32)),
        ("INT64", {"int64_contents": [-(2**63)]}, np.array([-(2**63)], np.int64)),
        ("BOOL", {"bool_contents": [True, False]}, np.array([True, False])),
        ("BYTES", {"bytes_contents": [b"\xff", b""]}, np.array([b"\xff", b""], np.object_)),
    ],
)
def test_typed_contents_are_narrowed(
    datatype: str, contents: dict[str, list[object]], expected: np.ndarray
) -> None:
    tensor = decode_infer_request(_typed(datatype, [len(expected)], **contents)).inputs[0]
    assert tensor.data.dtype == expected.dtype
    assert tensor.data.tolist() == expected.tolist()


def test_typed_contents_errors() -> None:
    assert _error(_typed("BYTES", [3], bytes_contents=[b"a"])) == (
        "[request id: r] expected 3 string elements for inference input 'IN' for model 'm', got 1"
    )
    assert "has no typed contents field" in _error(_typed("FP16", [1]))
    assert "of type 'FP32', expected datatype 'FP16'" in _error(
        _typed("FP16", [1], fp32_contents=[1.0])
    )


def test_parameters() -> None:
    request = _request("INT32", [1], b"\x00" * 4)
    request.parameters["b"].bool_param = True
    request.parameters["i"].int64_param = -3
    request.parameters["s"].string_param = "x"
    request.parameters["d"].double_param = 0.5
    request.parameters["u"].uint64_param = 2**64 - 1
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    output = request.outputs.add(name="OUT")
    output.parameters["classification"].int64_param = 3
    output.parameters["other"].string_param = "y"
    decoded = decode_infer_request(request)
    assert decoded.parameters == {
        "b": True, "i": -3, "s": "x", "d": 0.5, "u": 2**64 - 1,
        "triton_enable_empty_final_response": True,
    }  # fmt: skip
    assert decoded.outputs is not None
    assert decoded.outputs[0].classification == 3
    assert decoded.outputs[0].parameters == {"other": "y"}


@pytest.mark.parametrize(
    ("key", "field", "value", "message"),
    [
        ("triton_x", "bool_param", True, "parameter keys starting with 'triton_' are reserved"),
        ("sequence_start", "int64_param", 1, "'sequence_start' parameter, expected bool_param."),
        ("priority", "int64_param", -1, "invalid value for 'priority', expected value >= 0."),
        ("timeout", "string_param", "1", "'timeout' parameter, expected int64_param."),
    ],
)
def test_reserved_parameters(key: str, field: str, value: object, message: str) -> None:
    request = _request("INT32", [1], b"\x00" * 4)
    setattr(request.parameters[key], field, value)
    assert message in _error(request)


def test_shared_memory_is_unsupported_without_a_session() -> None:
    request = _request("INT32", [1])
    request.inputs[0].parameters["shared_memory_region"].string_param = "region"
    request.inputs[0].parameters["shared_memory_byte_size"].int64_param = 4
    with pytest.raises(UnsupportedError, match="Client shared memory is disabled"):
        decode_infer_request(request)


def test_encode_response() -> None:
    fp16 = np.array([[1.0, 2.0]], dtype=np.float16)
    # A non-contiguous output must still go out row-major.
    transposed = np.arange(6, dtype=np.int64).reshape(2, 3).T
    response = _encode(
        InferenceResponse(
            "m",
            "3",
            "id-1",
            [
                InferOutput("A", DataType.FP16, (1, 2), fp16),
                InferOutput("B", DataType.INT64, (3, 2), transposed),
            ],
            parameters={"flag": True, "n": 2**64 - 1, "f": 1.5, "s": "t"},
        )
    )
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "id-1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("A", "FP16", [1, 2]),
        ("B", "INT64", [3, 2]),
    ]
    assert response.raw_output_contents[0] == fp16.tobytes()
    assert response.raw_output_contents[1] == np.ascontiguousarray(transposed).tobytes()
    assert response.parameters["flag"].bool_param is True
    assert response.parameters["n"].uint64_param == 2**64 - 1
    assert response.parameters["f"].double_param == 1.5
    assert response.parameters["s"].string_param == "t"


# -- the zero-copy wire layer of ModelInfer ------------------------------------------


def _large_request() -> tuple[pb.ModelInferRequest, list[bytes]]:
    request = pb.ModelInferRequest(model_name="m", model_version="1", id="big")
    request.parameters["p"].int64_param = 7
    contents = [np.arange(40_000, dtype=np.int32).tobytes(), b"\x01" * 70_000, b""]
    for index, content in enumerate(contents):
        request.inputs.add(name=f"IN{index}", datatype="UINT8", shape=[len(content)])
        request.raw_input_contents.append(content)
    request.outputs.add(name="OUT").parameters["classification"].int64_param = 2
    return request, contents


def test_large_request_is_split_without_copies() -> None:
    request, contents = _large_request()
    data = request.SerializeToString()
    split = parse_infer_request(data)
    # Views of the received buffer, not copies.
    assert [view.obj for view in split.raw_input_contents] == [data] * 3
    assert [bytes(view) for view in split.raw_input_contents] == contents
    expected = pb.ModelInferRequest()
    expected.CopyFrom(request)
    expected.ClearField("raw_input_contents")
    assert split.message == expected
    decoded = decode_infer_request(split.message, split.raw_input_contents)
    assert [t.data.tobytes() for t in decoded.inputs] == contents
    assert decoded.parameters == {"p": 7}


def test_small_and_malformed_requests_parse_with_protobuf() -> None:
    request, _ = _large_request()
    small = pb.ModelInferRequest(model_name="m", raw_input_contents=[b"abc"])
    assert [
        bytes(v) for v in parse_infer_request(small.SerializeToString()).raw_input_contents
    ] == [b"abc"]
    # A length prefix past the end: the walk gives up and protobuf reports the error.
    truncated = request.SerializeToString()[:-10]
    with pytest.raises(Exception, match="Error parsing message"):
        parse_infer_request(truncated)


def test_response_wire_matches_protobuf() -> None:
    data = np.arange(12, dtype=np.float64).reshape(3, 4)[:, :2]  # non-contiguous
    response = InferenceResponse(
        "m", "1", "r", [InferOutput("OUT", DataType.FP64, (3, 2), data)], {"x": "y"}
    )
    wire = serialize_infer_response(encode_infer_response(response))
    expected = pb.ModelInferResponse(
        model_name="m",
        model_version="1",
        id="r",
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(name="OUT", datatype="FP64", shape=[3, 2])
        ],
        raw_output_contents=[np.ascontiguousarray(data).tobytes()],
    )
    expected.parameters["x"].string_param = "y"
    assert pb.ModelInferResponse.FromString(wire) == expected
