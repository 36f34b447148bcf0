"""Core requests to worker frames and worker frames to per-request results (server side).

Inputs are not copied on the way out when their bytes are contiguous (the socket or
the memfd takes them straight from the request's arrays); outputs arrive as numpy
views of the frame's payload or of the mapped memfd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from naiad.backends.base import ExecuteResult
from naiad.backends.python.runtime._naiad_pb.messages import (
    T_DATATYPE,
    T_NAME,
    T_NBYTES,
    T_OFFSET,
    T_SHAPE,
    T_WHERE,
    ExecuteDoneMsg,
    ExecuteMsg,
    RequestMsg,
    ResponseMsg,
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
    messages = []
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
        flags = (FLAG_SEQUENCE_START if params.get("sequence_start") else 0) | (
            FLAG_SEQUENCE_END if params.get("sequence_end") else 0
        )
        correlation = params.get("sequence_id", 0)
        timeout = params.get("timeout", 0)
        messages.append(
            RequestMsg(
                request.id,
                inputs,
                requested,
                request_parameters(params),
                correlation if isinstance(correlation, int | str) else 0,
                flags,
                timeout if isinstance(timeout, int) else 0,
            )
        )
    return ExecuteMsg(batch, messages).to_header()


def decode_results(frame: Frame, count: int) -> list[ExecuteResult]:
    """Per-request results; raises (failing the whole batch) when the batch failed."""
    done = ExecuteDoneMsg.from_header(frame.header)
    if done.error is not None:
        raise InternalError(done.error)
    if len(done.responses) != count:
        raise InternalError(f"the python worker answered {len(done.responses)} of {count} requests")
    return [decode_response(frame, response) for response in done.responses]


def decode_response(frame: Frame, response: ResponseMsg) -> ExecuteResult:
    """One request's outputs (views of the frame's bytes), or its error."""
    if response.error is not None:
        code = ErrorCode.__members__.get(response.error.code, ErrorCode.INTERNAL)
        return error_for_code(code, response.error.message)
    outputs = {}
    for desc in response.outputs:
        data = frame.tensor_bytes(desc[T_WHERE], desc[T_OFFSET], desc[T_NBYTES])
        outputs[desc[T_NAME]] = array_from_bytes(
            DataType.from_wire(desc[T_DATATYPE]), desc[T_SHAPE], data
        )
    return outputs
