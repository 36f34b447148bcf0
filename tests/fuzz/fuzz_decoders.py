"""Coverage-guided fuzzing (atheris/libFuzzer) of everything that parses client bytes.

Targets: the HTTP infer codec (JSON + binary extension, raw bodies), body decompression,
the gRPC ModelInfer wire splitter and codec, client shared memory references against a
real registered region, request validation, restricted-API specs and route
classification. A target may reject its input only with a :class:`NaiadError` (what
the server turns into a 4xx) or a protobuf ``DecodeError`` (what grpc turns into a
status); any other exception is a crash and stops the run with a non-zero exit.

    .venv/bin/python -m tests.fuzz.fuzz_decoders -runs=10000           # the acceptance run
    .venv/bin/python -m tests.fuzz.fuzz_decoders -max_total_time=3600  # a soak

libFuzzer's own flags pass through (``-runs``, ``-max_total_time``, ``-seed``...).
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["naiad"]):
    from google.protobuf.message import DecodeError
    from tritonclient.grpc import model_config_pb2 as mc
    from tritonclient.grpc import service_pb2 as pb

    from naiad.core.model_io import ModelIO
    from naiad.core.service import ModelMetadata, TensorMetadata
    from naiad.core.shared_memory import SharedMemoryRegistry
    from naiad.core.validation import validate_request
    from naiad.errors import NaiadError
    from naiad.frontends.grpc import codec as grpc_codec
    from naiad.frontends.grpc.wire import parse_infer_request
    from naiad.frontends.http import codec as http_codec
    from naiad.frontends.http.access import classify_path
    from naiad.frontends.http.body import decompress
    from naiad.frontends.http.shared_memory import register_system
    from naiad.security.restrictions import parse_restrictions

ALLOWED = (NaiadError, DecodeError)
LIMIT = 1 << 20

_SHM_DIR = Path(tempfile.mkdtemp(prefix="naiad-fuzz-shm-"))
(_SHM_DIR / "fuzz_region").write_bytes(bytes(range(256)) * 16)
REGISTRY = SharedMemoryRegistry(True, ("fuzz_",), directory=str(_SHM_DIR))
REGISTRY.register("region", "/fuzz_region", 0, 4096)

_CONFIG = mc.ModelConfig(
    name="simple",
    max_batch_size=8,
    input=[mc.ModelInput(name=n, data_type=mc.TYPE_INT32, dims=[16]) for n in ("INPUT0", "INPUT1")],
    output=[
        mc.ModelOutput(name=n, data_type=mc.TYPE_INT32, dims=[16]) for n in ("OUTPUT0", "OUTPUT1")
    ],
)
IO = ModelIO.from_config(_CONFIG)
RAW_METADATA = ModelMetadata(
    "m", ["1"], "onnxruntime_onnx", [TensorMetadata("I", "FP32", [-1, 4])], []
)


def _http_infer(data: bytes) -> None:
    header_length = struct.unpack_from("<i", data)[0] if len(data) >= 4 else None
    body = data[4:]
    if header_length is not None and header_length > len(body):
        header_length = len(body)  # the app checks this bound before the codec
    with REGISTRY.session() as shm:
        request, _ = http_codec.decode_infer_request("simple", "", body, header_length, 100, shm)
        validate_request(request, IO, "simple")


def _http_raw(data: bytes) -> None:
    http_codec.decode_raw_request("m", "", data, RAW_METADATA)


def _decompress(data: bytes) -> None:
    encoding = ("gzip", "deflate", "identity", "br")[data[0] % 4] if data else "gzip"
    decompress(data[1:], encoding, LIMIT)


def _grpc_infer(data: bytes) -> None:
    message = parse_infer_request(data)
    with REGISTRY.session() as shm:
        request = grpc_codec.decode_infer_request(message.message, message.raw_input_contents, shm)
        validate_request(request, IO, "simple")


def _grpc_split(data: bytes) -> None:
    # Force the zero-copy splitter (used for large messages) on small inputs too.
    from naiad.frontends.grpc import wire

    try:
        split = wire._split(data)
    except (ValueError, IndexError):
        return  # the caller falls back to protobuf's parser
    grpc_codec.decode_infer_request(split.message, split.raw_input_contents)


def _shm_register(data: bytes) -> None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return
    if isinstance(doc, dict):
        register_system(REGISTRY, "fuzzed", doc)
        REGISTRY.unregister("fuzzed")


def _text(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    classify_path(text)
    with contextlib.suppress(ValueError):
        parse_restrictions([text])


TARGETS: list[Callable[[bytes], None]] = [
    _http_infer,
    _http_raw,
    _decompress,
    _grpc_infer,
    _grpc_split,
    _shm_register,
    _text,
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    with contextlib.suppress(*ALLOWED):
        target(data[1:])


def seeds() -> list[bytes]:
    """Valid inputs for each target, so mutations start from the interesting shapes."""
    ints = list(range(16))
    json_doc = {
        "id": "r",
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": ints},
            {
                "name": "INPUT1",
                "shape": [1, 16],
                "datatype": "INT32",
                "parameters": {"binary_data_size": 64},
            },
        ],
        "outputs": [
            {"name": "OUTPUT0", "parameters": {"binary_data": True}},
            {
                "name": "OUTPUT1",
                "parameters": {"shared_memory_region": "region", "shared_memory_byte_size": 64},
            },
        ],
        "parameters": {"binary_data_output": True, "priority": 1},
    }
    header = json.dumps(json_doc).encode()
    http_binary = struct.pack("<i", len(header)) + header + bytes(64)
    shm_doc = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [1, 16],
                "datatype": "INT32",
                "parameters": {
                    "shared_memory_region": "region",
                    "shared_memory_byte_size": 64,
                    "shared_memory_offset": 128,
                },
            }
        ]
    }
    http_shm = struct.pack("<i", -1) + json.dumps(shm_doc).encode()
    message = pb.ModelInferRequest(model_name="simple", id="x")
    for name in ("INPUT0", "INPUT1"):
        tensor = message.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        if name == "INPUT1":
            tensor.parameters["shared_memory_region"].string_param = "region"
            tensor.parameters["shared_memory_byte_size"].int64_param = 64
    message.raw_input_contents.append(bytes(64))
    message.outputs.add(name="OUTPUT0").parameters["classification"].int64_param = 2
    grpc_bytes = message.SerializeToString()
    import gzip
    import zlib

    index = {t: i for i, t in enumerate(TARGETS)}
    return [
        bytes([index[_http_infer]]) + http_binary,
        bytes([index[_http_infer]]) + http_shm,
        bytes([index[_http_raw]]) + bytes(32),
        bytes([index[_decompress], 0]) + gzip.compress(header),
        bytes([index[_decompress], 1]) + zlib.compress(header),
        bytes([index[_grpc_infer]]) + grpc_bytes,
        bytes([index[_grpc_split]]) + grpc_bytes,
        bytes([index[_shm_register]]) + b'{"key": "/fuzz_region", "offset": 8, "byte_size": 64}',
        bytes([index[_text]]) + b"/v2/models/m/versions/1/infer",
        bytes([index[_text]]) + b"health,inference:k=v",
    ]


def main(argv: list[str]) -> None:
    corpus = Path(tempfile.mkdtemp(prefix="naiad-fuzz-corpus-"))
    for number, seed in enumerate(seeds()):
        (corpus / f"seed-{number}").write_bytes(seed)
    # Crash reproducers go to a temporary directory, not the working tree.
    artifacts = tempfile.mkdtemp(prefix="naiad-fuzz-artifacts-")
    args = [argv[0], f"-artifact_prefix={artifacts}/", *argv[1:], str(corpus)]
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
