"""The HTTP infer codec on its own: binary extension framing, exact BYTES, error texts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from naiad.errors import InvalidArgumentError
from naiad.frontends.http.codec import decode_infer_request, encode_infer_response
from naiad.inference import InferenceResponse, InferOutput, RequestedOutput
from naiad.tensors import DataType, serialize_bytes

VALUES = [b"\x00\xff\xfe", b"a\x00b", b"", b"\x80"]


def _binary_body(inputs: list[tuple[str, list[int], str, bytes]]) -> tuple[bytes, int]:
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "shape": s, "datatype": d, "parameters": {"binary_data_size": len(b)}}
                for n, s, d, b in inputs
            ]
        }
    ).encode()
    return header + b"".join(b for *_, b in inputs), len(header)


def test_binary_bytes_input_and_output_are_exact() -> None:
    blob = serialize_bytes(np.array(VALUES, dtype=np.object_))
    body, header_length = _binary_body([("IN", [1, 4], "BYTES", blob)])
    request, _ = decode_infer_request("m", "", body, header_length, 100)
    assert list(request.inputs[0].data.reshape(-1)) == VALUES

    response = InferenceResponse(
        "m",
        "1",
        outputs=[
            InferOutput(
                "OUT", DataType.BYTES, (1, 4), request.inputs[0].data, RequestedOutput("OUT")
            )
        ],
    )
    parts, json_length = encode_infer_response(response, binary_default=True)
    assert json_length == len(parts[0])
    header = json.loads(parts[0])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == len(blob)
    assert b"".join(bytes(p) for p in parts[1:]) == blob


def test_binary_inputs_are_views_of_the_body() -> None:
    data = np.arange(16, dtype=np.int32).tobytes()
    body, header_length = _binary_body(
        [("A", [1, 16], "INT32", data), ("B", [1, 16], "INT32", data)]
    )
    request, _ = decode_infer_request("m", "", body, header_length, 100)
    assert not request.inputs[0].data.flags.owndata  # no copy of the body
    np.testing.assert_array_equal(request.inputs[1].data.reshape(-1), np.arange(16))


@pytest.mark.parametrize(
    ("inputs", "extra", "message"),
    [
        (
            [("A", [1, 4], "INT32", b"\x00" * 16)],
            b"\x00",
            "unexpected additional input data for model 'm'",
        ),
        (
            [("A", [1, 4], "INT32", b"\x00" * 12)],
            b"",
            "input byte size mismatch for input 'A' for model 'm'. Expected 16, got 12",
        ),
    ],
)
def test_binary_framing_errors(
    inputs: list[tuple[str, list[int], str, bytes]], extra: bytes, message: str
) -> None:
    body, header_length = _binary_body(inputs)
    with pytest.raises(InvalidArgumentError) as info:
        decode_infer_request("m", "", body + extra, header_length, 100)
    assert message in str(info.value)


def test_declared_binary_size_beyond_body() -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "A",
                    "shape": [1, 4],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": 2**31},
                }
            ]
        }
    ).encode()
    with pytest.raises(InvalidArgumentError, match="expecting 2147483632 additional bytes"):
        decode_infer_request("m", "", header + b"\x00" * 16, len(header), 100)


def test_reserved_parameter_prefix() -> None:
    body = json.dumps({"inputs": [], "parameters": {"triton_x": 1}}).encode()
    with pytest.raises(InvalidArgumentError, match="reserved for Triton usage"):
        decode_infer_request("m", "", body, None, 100)


def test_input_needs_exactly_one_data_source() -> None:
    body = json.dumps({"inputs": [{"name": "A", "shape": [1], "datatype": "INT32"}]}).encode()
    with pytest.raises(InvalidArgumentError, match="But no field is set"):
        decode_infer_request("m", "", body, None, 100)
