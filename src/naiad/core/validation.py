"""Request validation against a model's config, with Triton's checks and wording.

Messages match Triton's core (``InferenceRequest::Normalize``) because scripts and
Triton's example clients match on them; those raised inside Triton's request object
carry its ``[request id: ...]`` prefix, the others do not.
"""

from __future__ import annotations

from naiad.core.model_io import ModelIO
from naiad.errors import InvalidArgumentError
from naiad.inference import InferenceRequest
from naiad.tensors import format_shape


def request_prefix(request: InferenceRequest) -> str:
    return f"[request id: {request.id or '<id_unknown>'}] "


def validate_request(request: InferenceRequest, io: ModelIO, model_name: str) -> int:
    """Check ``request`` against the model; return its batch size (0 when not batching)."""
    prefix = request_prefix(request)
    if request.outputs is not None:
        requested: set[str] = set()
        for output in request.outputs:
            if output.name not in io.outputs:
                raise InvalidArgumentError(
                    f"unexpected inference output '{output.name}' for model '{model_name}'"
                )
            # A repeated output would be computed once but encoded once per repeat: a
            # small request asking for a huge response (CVE-2026-24146's class).
            if output.name in requested:
                raise InvalidArgumentError(f"output '{output.name}' already exists in request")
            requested.add(output.name)
    seen: set[str] = set()
    for tensor in request.inputs:
        if tensor.name in seen:
            raise InvalidArgumentError(f"{prefix}input '{tensor.name}' already exists in request")
        seen.add(tensor.name)
    required = io.required_inputs
    missing = [name for name in required if name not in seen]
    if len(seen) > len(io.inputs) or len(seen) < len(required):
        raise InvalidArgumentError(_count_message(prefix, io, model_name, request, missing))
    for tensor in request.inputs:
        if tensor.name not in io.inputs:
            raise InvalidArgumentError(
                f"unexpected inference input '{tensor.name}' for model '{model_name}'"
            )
    if missing:
        raise InvalidArgumentError(_count_message(prefix, io, model_name, request, missing))

    batch_size = 0
    if io.max_batch_size > 0:
        for tensor in request.inputs:
            if not tensor.shape:
                raise InvalidArgumentError(
                    f"{prefix}input '{tensor.name}' has no shape but model requires batch "
                    f"dimension for '{model_name}'"
                )
            if batch_size == 0:
                batch_size = tensor.shape[0]
            elif tensor.shape[0] != batch_size:
                raise InvalidArgumentError(
                    f"{prefix}input '{tensor.name}' batch size does not match other inputs "
                    f"for '{model_name}'"
                )
        if batch_size > io.max_batch_size:
            raise InvalidArgumentError(
                f"{prefix}inference request batch-size must be <= {io.max_batch_size} "
                f"for '{model_name}'"
            )

    for tensor in request.inputs:
        spec = io.inputs[tensor.name]
        if tensor.datatype is not spec.datatype:
            raise InvalidArgumentError(
                f"{prefix}inference input '{tensor.name}' data-type is '{tensor.datatype.value}', "
                f"but model '{model_name}' expects '{spec.datatype.value}'"
            )
        dims = tensor.shape[1:] if io.max_batch_size > 0 else tensor.shape
        if not _dims_match(dims, spec.dims):
            expected = spec.full_shape(io.max_batch_size)
            raise InvalidArgumentError(
                f"{prefix}unexpected shape for input '{tensor.name}' for model '{model_name}'. "
                f"Expected {format_shape(expected)}, got {format_shape(tensor.shape)}"
            )
    return batch_size


def _dims_match(got: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    if len(got) != len(expected):
        return False
    return all(e == -1 or g == e for g, e in zip(got, expected, strict=True))


def _quoted(names: list[str]) -> str:
    return "[" + ",".join(f"'{name}'" for name in names) + "]"


def _count_message(
    prefix: str, io: ModelIO, model_name: str, request: InferenceRequest, missing: list[str]
) -> str:
    got = [tensor.name for tensor in request.inputs]
    required = io.required_inputs
    if len(required) == len(io.inputs):
        head = f"expected {len(io.inputs)} inputs"
    else:
        head = f"expected number of inputs between {len(required)} and {len(io.inputs)}"
    return (
        f"{prefix}{head} but got {len(got)} inputs for model '{model_name}'. "
        f"Got input(s) {_quoted(got)}, but missing required input(s) {_quoted(missing)}. "
        "Please provide all required input(s)."
    )
