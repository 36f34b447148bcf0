"""Zero-copy (de)serialization of ModelInfer messages: tensor bytes never enter protobuf.

Parsing a ``ModelInferRequest`` with protobuf copies every ``raw_input_contents`` entry
into its arena, and reading one back copies it again; building and serializing a
``ModelInferResponse`` copies each output twice more. For large tensors those copies
dominate a request. So the ModelInfer RPC gets its own (de)serializers: the request's
top-level fields are walked on the wire, ``raw_input_contents`` entries become
``memoryview`` slices of the received buffer, and only the small remainder is parsed by
protobuf; the response is the protobuf header plus the raw outputs appended as field 6
entries, joined once. Both are plain protobuf wire format, so any client reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritonclient.grpc import service_pb2 as pb

_RAW_INPUT_TAG = (7 << 3) | 2  # ModelInferRequest.raw_input_contents, length-delimited
_RAW_OUTPUT_TAG = bytes([(6 << 3) | 2])  # ModelInferResponse.raw_output_contents
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
# Below this size protobuf's copies cost less than walking the fields in Python.
SPLIT_THRESHOLD_BYTES = 64 * 1024


@dataclass(slots=True)
class InferRequestMessage:
    """A ModelInferRequest without its raw contents, and those contents as views."""

    message: pb.ModelInferRequest
    raw_input_contents: list[memoryview] = field(default_factory=list)


@dataclass(slots=True)
class InferResponseMessage:
    """A ModelInferResponse without its raw contents, and the contents to append."""

    message: pb.ModelInferResponse
    raw_output_contents: list[bytes | memoryview] = field(default_factory=list)


def _varint(view: memoryview, offset: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = view[offset]  # IndexError past the end: malformed, handled by the caller
        offset += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, offset
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _split(data: bytes) -> InferRequestMessage:
    view = memoryview(data)
    end = len(view)
    raw: list[memoryview] = []
    header: list[memoryview] = []
    offset = 0
    while offset < end:
        start = offset
        tag, offset = _varint(view, offset)
        wire_type = tag & 7
        if wire_type == _LENGTH_DELIMITED:
            length, offset = _varint(view, offset)
            if offset + length > end:
                raise ValueError("truncated field")
            if tag == _RAW_INPUT_TAG:
                raw.append(view[offset : offset + length])
                offset += length
                continue
            offset += length
        elif wire_type == _VARINT:
            _, offset = _varint(view, offset)
        elif wire_type == _FIXED64:
            offset += 8
        elif wire_type == _FIXED32:
            offset += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if offset > end:
            raise ValueError("truncated field")
        header.append(view[start:offset])
    # Field order is free in protobuf, so the non-raw fields parse the same joined.
    message = pb.ModelInferRequest.FromString(b"".join(header))
    return InferRequestMessage(message, raw)


def parse_infer_request(data: bytes) -> InferRequestMessage:
    """The request deserializer of the ModelInfer RPC."""
    if len(data) >= SPLIT_THRESHOLD_BYTES:
        try:
            return _split(data)
        except (ValueError, IndexError):
            # Malformed on the wire: protobuf parses it whole below, and raises its own
            # error if it cannot.
            pass
    message = pb.ModelInferRequest.FromString(data)
    raw = [memoryview(entry) for entry in message.raw_input_contents]
    return InferRequestMessage(message, raw)


def serialize_infer_response(response: InferResponseMessage) -> bytes:
    """The response serializer of the ModelInfer RPC: one copy of each output."""
    parts: list[bytes | memoryview] = [response.message.SerializeToString()]
    for entry in response.raw_output_contents:
        parts.append(_RAW_OUTPUT_TAG)
        size = len(entry) if isinstance(entry, bytes) else entry.nbytes
        parts.append(_encode_varint(size))
        parts.append(entry)
    return b"".join(parts)
