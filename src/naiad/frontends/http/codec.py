"""The HTTP infer codec: KServe v2 JSON plus Triton's binary tensor data extension.

A request body is a JSON header, optionally followed by raw input blobs in input
order (``Inference-Header-Content-Length`` gives the JSON's length). Binary inputs
are viewed in place with ``numpy.frombuffer``: no copy. Error texts follow Triton's
``http_server.cc``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from naiad.core.service import ModelMetadata
from naiad.core.shared_memory import DISABLED_MESSAGE, SharedMemorySession, pop_reference
from naiad.errors import InvalidArgumentError, NaiadError, UnsupportedError
from naiad.inference import (
    InferenceRequest,
    InferenceResponse,
    InferInput,
    ParameterValue,
    RequestedOutput,
)
from naiad.tensors import (
    DataType,
    array_from_bytes,
    array_from_json,
    array_to_json,
    array_to_wire_bytes,
    element_count,
)

RESERVED_PREFIX = "triton_"
ALLOWED_RESERVED = {"triton_enable_empty_final_response"}


def _fail(field: str, detail: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"Unable to parse '{field}': {detail}")


def _member(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], kind_name: str) -> Any:
    if key not in obj:
        raise _fail(key, f"attempt to access non-existing object member '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(key, f"attempt to access JSON non-{kind_name} as {kind_name}")
    return value


def _json_depth_ok(value: Any, limit: int) -> bool:
    """Bound the nesting of the request structure (tensor data lists checked at their head)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list) and item:
            head = item[0]
            if isinstance(head, dict):
                stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
            elif isinstance(head, list):
                stack.append((head, depth + 1))
    return True


def parse_json(buffer: bytes | memoryview, max_depth: int) -> dict[str, Any]:
    try:
        value = orjson.loads(buffer)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgumentError(f"failed to parse the request JSON buffer: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgumentError(
            "failed to parse the request JSON buffer: the request must be a JSON object"
        )
    # Nesting needs one bracket per level, so a document with no more brackets than the
    # limit cannot exceed it; counting bytes in C skips the walk for ordinary requests
    # (the walk cost about 7 % of an in-process request to a small model).
    raw = buffer if isinstance(buffer, bytes) else bytes(buffer)  # a memcpy, far below parsing
    if raw.count(b"[") + raw.count(b"{") > max_depth and not _json_depth_ok(value, max_depth):
        raise InvalidArgumentError(
            f"JSON nesting depth exceeds maximum allowed limit ({max_depth})"
        )
    return value


def _parameters(raw: Any, where: str) -> dict[str, ParameterValue]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(where, "attempt to access JSON non-object as object")
    out: dict[str, ParameterValue] = {}
    for key, value in raw.items():
        if not isinstance(value, bool | int | float | str):
            raise InvalidArgumentError(
                f"parameter '{key}' has invalid type. It should be either 'int', 'bool', or "
                "'string'."
            )
        out[key] = value
    return out


def _shape(raw: dict[str, Any]) -> tuple[int, ...]:
    shape = _member(raw, "shape", list, "array")
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise _fail("shape", "attempt to access JSON non-unsigned-integer as unsigned-integer")
    return tuple(shape)


def decode_infer_request(
    model_name: str,
    model_version: str,
    body: bytes,
    header_length: int | None,
    max_depth: int,
    shm: SharedMemorySession | None = None,
) -> tuple[InferenceRequest, bool]:
    """Decode an infer body; also returns the request's ``binary_data_output`` default.

    Inputs and outputs in client shared memory are resolved through ``shm`` (the
    request's session); without one they are refused.
    """
    if header_length is not None and header_length > 0:
        if header_length > len(body):
            raise InvalidArgumentError(
                f"inference header size should be in range (0, {len(body)}), got: {header_length}"
            )
        view = memoryview(body)
        header, binary = view[:header_length], view[header_length:]
    else:
        header, binary = memoryview(body), memoryview(b"")
    doc = parse_json(header, max_depth)

    request_id = doc.get("id", "")
    if not isinstance(request_id, str):
        raise _fail("id", "attempt to access JSON non-string as string")
    parameters = _parameters(doc.get("parameters"), "parameters")
    for key in parameters:
        if key.startswith(RESERVED_PREFIX) and key not in ALLOWED_RESERVED:
            raise InvalidArgumentError(
                "parameter keys starting with 'triton_' are reserved for Triton usage and "
                "should not be specified."
            )
    binary_output = parameters.pop("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise _fail("binary_data_output", "attempt to access JSON non-boolean as boolean")

    raw_inputs = _member(doc, "inputs", list, "array")
    inputs: list[InferInput] = []
    offset = 0
    for raw in raw_inputs:
        if not isinstance(raw, dict):
            raise _fail("inputs", "attempt to access JSON non-object as object")
        name = _member(raw, "name", str, "string")
        shape = _shape(raw)
        datatype_name = _member(raw, "datatype", str, "string")
        try:
            datatype = DataType.from_wire(datatype_name)
        except NaiadError:
            raise InvalidArgumentError(f"invalid datatype for input {name}") from None
        input_params = _parameters(raw.get("parameters"), "parameters")
        binary_size = input_params.pop("binary_data_size", None)
        has_data = "data" in raw
        has_shm = "shared_memory_region" in input_params
        set_fields = [
            f
            for f, present in (
                ("'data'", has_data),
                ("'binary_data_size'", binary_size is not None),
                ("'shared_memory_region'", has_shm),
            )
            if present
        ]
        if len(set_fields) != 1:
            detail = "no field is set" if not set_fields else "set " + " ".join(set_fields)
            raise InvalidArgumentError(
                "Input must set only one of the following fields: 'data', 'binary_data_size' in "
                "'parameters', 'shared_memory_region' in 'parameters'. But " + detail
            )
        if has_shm:
            reference = pop_reference(input_params, "input", name)
            if shm is None or reference is None:
                raise UnsupportedError(DISABLED_MESSAGE)
            prefix = f"[request id: {request_id or '<id_unknown>'}] "
            data = shm.read_input(reference, datatype, shape, name, model_name, prefix)
        elif binary_size is not None:
            if not isinstance(binary_size, int) or isinstance(binary_size, bool) or binary_size < 0:
                raise _fail(
                    "binary_data_size",
                    "attempt to access JSON non-unsigned-integer as unsigned-integer",
                )
            if header_length is None or header_length <= 0:
                raise InvalidArgumentError(
                    "must specify valid 'Infer-Header-Content-Length' in request header and "
                    "'binary_data_size' when passing inputs in binary data format"
                )
            if offset + binary_size > len(binary):
                raise InvalidArgumentError(
                    f"unexpected size for input '{name}', expecting "
                    f"{offset + binary_size - len(binary)} additional bytes for model "
                    f"'{model_name}'"
                )
            blob = binary[offset : offset + binary_size]
            offset += binary_size
            data = _from_bytes(datatype, shape, blob, name, model_name, request_id)
        else:
            try:
                data = array_from_json(datatype, shape, raw["data"])
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(
                    f"Unable to parse 'data' of input '{name}': {exc}"
                ) from None
        inputs.append(InferInput(name, datatype, shape, data, input_params))
    if offset != len(binary):
        raise InvalidArgumentError(f"unexpected additional input data for model '{model_name}'")

    outputs: list[RequestedOutput] | None = None
    if "outputs" in doc:
        raw_outputs = _member(doc, "outputs", list, "array")
        outputs = [_requested_output(raw, shm) for raw in raw_outputs] or None
    request = InferenceRequest(
        model_name=model_name,
        model_version=model_version,
        id=request_id,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters,
    )
    return request, binary_output


def _requested_output(raw: Any, shm: SharedMemorySession | None = None) -> RequestedOutput:
    if not isinstance(raw, dict):
        raise _fail("outputs", "attempt to access JSON non-object as object")
    name = _member(raw, "name", str, "string")
    params = _parameters(raw.get("parameters"), "parameters")
    reference = pop_reference(params, "output", name)
    binary = params.pop("binary_data", None)
    if binary is not None and not isinstance(binary, bool):
        raise _fail("binary_data", "attempt to access JSON non-boolean as boolean")
    target = None
    if reference is not None:
        if shm is None:
            raise UnsupportedError(DISABLED_MESSAGE)
        if binary:
            raise InvalidArgumentError(
                f"output '{name}' can not set both 'binary_data' and 'shared_memory_region'"
            )
        target = shm.output_target(reference)
    classification = params.pop("classification", 0)
    if (
        not isinstance(classification, int)
        or isinstance(classification, bool)
        or classification < 0
    ):
        raise InvalidArgumentError(
            "Unable to set 'classification': expected a non-negative integer"
        )
    return RequestedOutput(
        name,
        classification=classification,
        binary_data=binary,
        parameters=params,
        shared_memory=target,
    )


def _from_bytes(
    datatype: DataType,
    shape: tuple[int, ...],
    blob: memoryview,
    name: str,
    model: str,
    request_id: str,
) -> Any:
    prefix = f"[request id: {request_id or '<id_unknown>'}] "
    if datatype is DataType.BYTES:
        try:
            return array_from_bytes(datatype, shape, blob)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(
                f"{prefix}{exc} for inference input '{name}' for model '{model}'"
            ) from None
    expected = element_count(shape) * datatype.itemsize
    if expected != len(blob):
        raise InvalidArgumentError(
            f"{prefix}input byte size mismatch for input '{name}' for model '{model}'. "
            f"Expected {expected}, got {len(blob)}"
        )
    return array_from_bytes(datatype, shape, blob)


def decode_raw_request(
    model_name: str, model_version: str, body: bytes, metadata: ModelMetadata
) -> InferenceRequest:
    """A body that is one input's raw bytes (``Inference-Header-Content-Length: 0``)."""
    prefix = "[request id: <id_unknown>] "
    if len(metadata.inputs) != 1:
        raise InvalidArgumentError(
            f"{prefix}Raw request must only have 1 input (found 1) to be deduced but got "
            f"{len(metadata.inputs)} inputs in '{model_name}' model configuration"
        )
    spec = metadata.inputs[0]
    datatype = DataType.from_wire(spec.datatype)
    shape = [1 if i == 0 and d == -1 else d for i, d in enumerate(spec.shape)]
    batching = bool(spec.shape) and spec.shape[0] == -1
    dims = shape[1:] if batching else shape
    variable = [i for i, d in enumerate(dims) if d == -1]
    if datatype is DataType.BYTES:
        if dims != [1]:
            raise InvalidArgumentError(
                f"{prefix}For BYTE datatype raw input '{spec.name}', the model must have input "
                "shape [1]"
            )
    elif len(variable) > 1:
        raise InvalidArgumentError(
            f"{prefix}The shape of the raw input '{spec.name}' can not be deduced because there "
            "are more than one variable-sized dimension"
        )
    elif variable:
        fixed = element_count([d for d in dims if d != -1]) * datatype.itemsize
        if fixed == 0 or len(body) % fixed:
            raise InvalidArgumentError(
                f"{prefix}input byte size mismatch for input '{spec.name}' for model "
                f"'{model_name}': {len(body)} bytes is not a multiple of {fixed}"
            )
        dims[variable[0]] = len(body) // fixed
    full = tuple(([1] if batching else []) + dims)
    if datatype is DataType.BYTES:
        # The whole body is one element (no length prefix), as in Triton.
        import numpy as np

        data = np.empty(full, dtype=np.object_)
        data.reshape(-1)[0] = bytes(body)
    else:
        data = _from_bytes(datatype, full, memoryview(body), spec.name, model_name, "")
    return InferenceRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=[InferInput(spec.name, datatype, full, data)],
    )


def encode_infer_response(
    response: InferenceResponse, binary_default: bool, shm: SharedMemorySession | None = None
) -> tuple[list[bytes | memoryview], int | None]:
    """JSON header plus binary blobs; the second value is the header length when binary.

    Outputs the client placed in shared memory are written there (through ``shm``, the
    request's session) and described by name, datatype and shape only.
    """
    outputs_json: list[dict[str, Any]] = []
    blobs: list[bytes | memoryview] = []
    for output in response.outputs:
        requested = output.requested
        binary = (
            binary_default
            if requested is None or requested.binary_data is None
            else requested.binary_data
        )
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype.value,
            "shape": list(output.shape),
        }
        if requested is not None and requested.shared_memory is not None and shm is not None:
            blob = array_to_wire_bytes(output.datatype, output.data)
            shm.write_output(requested.shared_memory, output.name, blob)
        elif binary:
            blob = array_to_wire_bytes(output.datatype, output.data)
            entry["parameters"] = {"binary_data_size": len(blob)}
            if len(blob):
                blobs.append(blob)
        else:
            entry["data"] = array_to_json(output.datatype, output.data)
        outputs_json.append(entry)
    doc: dict[str, Any] = {}
    if response.id:
        doc["id"] = response.id
    doc["model_name"] = response.model_name
    doc["model_version"] = response.model_version
    if response.parameters:
        doc["parameters"] = {
            k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
            for k, v in response.parameters.items()
        }
    doc["outputs"] = outputs_json
    header = orjson.dumps(doc)
    if any(
        "parameters" in entry and "binary_data_size" in entry["parameters"]
        for entry in outputs_json
    ):
        return [header, *blobs], len(header)
    return [header], None


def decode_load_parameters(parameters: dict[str, Any]) -> tuple[str | None, dict[str, bytes]]:
    """The load API's ``config`` (a JSON string) and ``file:<path>`` base64 contents."""
    config = parameters.get("config")
    if config is not None and not isinstance(config, str):
        raise InvalidArgumentError("Unable to parse 'config': expected a JSON string")
    files: dict[str, bytes] = {}
    for key, value in parameters.items():
        if not key.startswith("file:"):
            continue
        if not isinstance(value, str):
            raise InvalidArgumentError(f"Unable to parse '{key[:80]}': expected base64 text")
        try:
            files[key[len("file:") :]] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgumentError(f"Unable to parse '{key[:80]}': invalid base64") from None
    return config, files
