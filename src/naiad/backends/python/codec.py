"""Core requests to worker frames and worker frames to per-request results (server side).

Inputs are not copied on the way out when their bytes are contiguous (the socket or
the memfd takes them straight from the request's arrays); outputs arrive as numpy
views of the frame's payload or of the mapped memfd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from naiad.backends.base import ExecuteResult
from naiad.backends.python.runtime._naiad_pb.messages import (
    P_ERROR,
    P_OUTPUTS,
    ErrorInfo,
    RequestMsg,
    execute_header,
)
from naiad.backends.python.runtime._naiad_pb.wire import Frame, PayloadBuilder
from naiad.errors import ErrorCode, InternalError, error_for_code
from naiad.inference import InferenceRequest, ParameterValue
from naiad.tensors import DataType, array_from_bytes, array_to_wire_bytes

# Request parameters the frontends and the core give a meaning; Triton does not pass
# them on in request.parameters().
RESERVED_PARAMETERS = frozenset(
    {
        "sequence_id",
        "sequence_start",
        "sequence_end",
        "priority",
        "timeout",
        "binary_data_output",
        "triton_enable_empty_final_response",
    }
)
FLAG_SEQUENCE_START = 1
FLAG_SEQUENCE_END = 2


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"unsupported parameter value {type(value).__name__}")


def request_parameters(parameters: dict[str, ParameterValue]) -> str:
    passed = {k: v for k, v in parameters.items() if k not in RESERVED_PARAMETERS}
    return orjson.dumps(passed, default=_json_value).decode() if passed else "{}"


def encode_batch(
    batch: int,
    requests: Sequence[InferenceRequest],
    output_names: Sequence[str],
    payload: PayloadBuilder,
) -> dict[str, Any]:
    wire = []
    for request in requests:
        inputs = []
        for tensor in request.inputs:
            desc: list[Any] = [tensor.name, tensor.datatype.value, list(tensor.shape)]
            payload.add(array_to_wire_bytes(tensor.datatype, tensor.data), desc)
            inputs.append(desc)
        requested = (
            [output.name for output in request.outputs]
            if request.outputs is not None
            else list(output_names)
        )
        params = request.parameters
        flags, passed = 0, "{}"
        correlation: object = 0
        timeout: object = 0
        if params:  # most requests carry none: skip the lookups and the JSON encoding
            flags = (FLAG_SEQUENCE_START if params.get("sequence_start") else 0) | (
                FLAG_SEQUENCE_END if params.get("sequence_end") else 0
            )
            correlation = params.get("sequence_id", 0)
            timeout = params.get("timeout", 0)
            passed = request_parameters(params)
        wire.append(
            RequestMsg(
                request.id,
                inputs,
                requested,
                passed,
                correlation if isinstance(correlation, int | str) else 0,
                flags,
                timeout if isinstance(timeout, int) else 0,
            ).to_wire()
        )
    return execute_header(batch, wire)


def decode_results(frame: Frame, count: int) -> list[ExecuteResult]:
    """Per-request results; raises (failing the whole batch) when the batch failed."""
    header = frame.header
    error = header.get("error")
    if error is not None:
        raise InternalError(error)
    responses = header["responses"]
    if len(responses) != count:
        raise InternalError(f"the python worker answered {len(responses)} of {count} requests")
    return [decode_response(frame, response) for response in responses]


# Wire name -> numpy dtype of the fixed-size types.
_WIRE_DTYPES = {t.value: t.numpy_dtype for t in DataType if t is not DataType.BYTES}


def decode_response(frame: Frame, response: list[Any]) -> ExecuteResult:
    """One request's outputs (views of the frame's bytes), or its error, from a
    ``ResponseMsg`` wire list."""
    error = response[P_ERROR]
    if error is not None:
        info = ErrorInfo.from_wire(error)
        assert info is not None
        code = ErrorCode.__members__.get(info.code, ErrorCode.INTERNAL)
        return error_for_code(code, info.message)
    outputs = {}
    for name, datatype, shape, where, offset, nbytes in response[P_OUTPUTS]:
        data = frame.tensor_bytes(where, offset, nbytes)
        dtype = _WIRE_DTYPES.get(datatype)
        if dtype is None:
            outputs[name] = array_from_bytes(DataType.from_wire(datatype), shape, data)
            continue
        try:
            outputs[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
        except ValueError as exc:
            raise InternalError(
                f"the python worker sent output '{name}' with {nbytes} bytes for shape "
                f"{shape} of {datatype}: {exc}"
            ) from None
    return outputs
