"""Triton's generate extension: ``.../generate`` and ``.../generate_stream`` (SSE).

The request is one flat JSON object: keys naming model inputs become inputs (a scalar
or a list, shaped by the model's dims, with a batch of 1 when the model batches), the
``parameters`` object and every other key become request parameters. A response is
``{"model_name", "model_version", <output>: value, ...}`` with single-element outputs
unwrapped. ``generate_stream`` sends each response as a server-sent event
``data: {...}\\n\\n``; an error after the stream started is sent as ``data: {"error": ...}``.
The same events serve ``/infer`` of a decoupled model when the client accepts
``text/event-stream`` (beyond Triton).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from naiad.core.model_io import ModelIO
from naiad.errors import InvalidArgumentError
from naiad.inference import InferenceRequest, InferenceResponse, InferInput, ParameterValue
from naiad.tensors import DataType


def _parameter(key: str, value: Any) -> ParameterValue:
    if isinstance(value, bool | int | float | str):
        return value
    raise InvalidArgumentError(
        f"generate: parameter '{key}' must be a bool, number or string, got {type(value).__name__}"
    )


def _array(name: str, value: Any, datatype: DataType) -> np.ndarray:
    try:
        if datatype is DataType.BYTES:
            flat = np.asarray(value, dtype=object).reshape(-1)
            return np.array(
                [v.encode() if isinstance(v, str) else bytes(v) for v in flat], dtype=object
            )
        return np.asarray(value, dtype=datatype.numpy_dtype).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"generate: input '{name}' is not {datatype.value}: {exc}"
        ) from None


def _shape(name: str, dims: tuple[int, ...], count: int) -> tuple[int, ...]:
    known = math.prod(d for d in dims if d >= 0)
    variable = sum(1 for d in dims if d < 0)
    if variable > 1 or (variable == 0 and known != count) or (variable and count % max(known, 1)):
        raise InvalidArgumentError(
            f"generate: input '{name}' has {count} elements, which do not fit its dims {list(dims)}"
        )
    return tuple(d if d >= 0 else count // max(known, 1) for d in dims)


def decode_generate_request(name: str, version: str, body: Any, io: ModelIO) -> InferenceRequest:
    if not isinstance(body, dict):
        raise InvalidArgumentError("generate: the request body must be a JSON object")
    request = InferenceRequest(model_name=name, model_version=version)
    for key, value in body.items():
        spec = io.inputs.get(key)
        if spec is not None:
            array = _array(key, value, spec.datatype)
            shape = _shape(key, spec.dims, array.size)
            if io.max_batch_size > 0:
                shape = (1, *shape)
            request.inputs.append(InferInput(key, spec.datatype, shape, array.reshape(shape)))
        elif key == "parameters":
            if not isinstance(value, dict):
                raise InvalidArgumentError("generate: 'parameters' must be a JSON object")
            for pkey, pvalue in value.items():
                request.parameters[pkey] = _parameter(pkey, pvalue)
        elif key == "id" and isinstance(value, str):
            request.id = value
        else:
            request.parameters[key] = _parameter(key, value)
    return request


def _value(array: np.ndarray) -> Any:
    if array.dtype == object:
        items = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.flat]
        return items[0] if len(items) == 1 else items
    return array.item() if array.size == 1 else array.reshape(-1).tolist()


def generate_json(response: InferenceResponse) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id:
        answer["id"] = response.id
    for output in response.outputs:
        answer[output.name] = _value(output.data)
    return answer


def sse_event(value: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"


def infer_json(response: InferenceResponse) -> dict[str, Any]:
    """A response in /infer's JSON form (every output as JSON data)."""
    outputs = []
    for output in response.outputs:
        data = output.data
        values = (
            [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in data.flat]
            if data.dtype == object
            else data.reshape(-1).tolist()
        )
        outputs.append(
            {
                "name": output.name,
                "datatype": output.datatype.value,
                "shape": list(output.shape),
                "data": values,
            }
        )
    answer: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id:
        answer["id"] = response.id
    return answer
