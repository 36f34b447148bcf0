"""Translate Triton's gRPC ``ModelInferRequest``/``ModelInferResponse`` to Naiad's core types.

Tensor data arrives either in ``raw_input_contents`` (what ``tritonclient`` always
sends, one entry per input in order) or in the typed ``contents`` fields of a hand-built
request; both become numpy arrays of exactly the declared shape. Error texts follow
Triton's gRPC frontend (``infer_handler.cc``) and core, because clients match on them.
Every size derived from a client shape is overflow-checked before anything is allocated.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from naiad.core.shared_memory import (
    DISABLED_MESSAGE,
    SharedMemoryReference,
    SharedMemorySession,
    pop_reference,
)
from naiad.core.validation import request_prefix
from naiad.errors import InvalidArgumentError, NaiadError, UnsupportedError
from naiad.frontends.grpc.wire import InferResponseMessage
from naiad.inference import (
    InferenceRequest,
    InferenceResponse,
    InferInput,
    ParameterValue,
    RequestedOutput,
)
from naiad.tensors import (
    INT64_MAX,
    DataType,
    array_from_bytes,
    array_to_wire_bytes,
    byte_size,
    element_count,
    format_shape,
)

# The one request parameter key starting with "triton_" that clients may send.
_ALLOWED_TRITON_KEYS = ("triton_enable_empty_final_response",)

# Request parameters Triton gives a meaning, with the value kinds it accepts for each.
_TYPED_PARAMETERS: dict[str, tuple[frozenset[str], str]] = {
    "sequence_id": (frozenset({"int64_param", "string_param"}), "int64_param or string_param"),
    "sequence_start": (frozenset({"bool_param"}), "bool_param"),
    "sequence_end": (frozenset({"bool_param"}), "bool_param"),
    "priority": (frozenset({"int64_param", "uint64_param"}), "int64_param or uint64_param"),
    "timeout": (frozenset({"int64_param"}), "int64_param"),
}

# Typed ``contents`` fields in Triton's order, with the datatype each one carries.
# ``int_contents``/``uint_contents`` also carry the 8- and 16-bit types (narrowed here).
_CONTENT_FIELDS: tuple[tuple[str, DataType], ...] = (
    ("bool_contents", DataType.BOOL),
    ("int_contents", DataType.INT32),
    ("int64_contents", DataType.INT64),
    ("uint_contents", DataType.UINT32),
    ("uint64_contents", DataType.UINT64),
    ("fp32_contents", DataType.FP32),
    ("fp64_contents", DataType.FP64),
    ("bytes_contents", DataType.BYTES),
)
_NARROWED = {
    DataType.INT8: DataType.INT32,
    DataType.INT16: DataType.INT32,
    DataType.UINT8: DataType.UINT32,
    DataType.UINT16: DataType.UINT32,
}
_LEN = struct.Struct("<I")


# -- parameters ----------------------------------------------------------------------


def parameter_value(key: str, parameter: pb.InferParameter) -> ParameterValue:
    kind = parameter.WhichOneof("parameter_choice")
    if kind is None:
        raise InvalidArgumentError(
            f"invalid value type for '{key}' parameter, expected int64_param, bool_param, "
            "or string_param."
        )
    value: ParameterValue = getattr(parameter, kind)
    return value


def decode_request_parameters(
    parameters: Mapping[str, pb.InferParameter],
) -> dict[str, ParameterValue]:
    decoded: dict[str, ParameterValue] = {}
    for key, parameter in parameters.items():
        if key.startswith("triton_") and key not in _ALLOWED_TRITON_KEYS:
            raise InvalidArgumentError(
                "parameter keys starting with 'triton_' are reserved for Triton usage. Only "
                "the following keys starting with 'triton_' are allowed: "
                + ", ".join(_ALLOWED_TRITON_KEYS)
            )
        typed = _TYPED_PARAMETERS.get(key)
        if typed is not None and parameter.WhichOneof("parameter_choice") not in typed[0]:
            raise InvalidArgumentError(
                f"invalid value type for '{key}' parameter, expected {typed[1]}."
            )
        value = parameter_value(key, parameter)
        if key == "priority" and isinstance(value, int) and value < 0:
            raise InvalidArgumentError("invalid value for 'priority', expected value >= 0.")
        decoded[key] = value
    return decoded


def encode_parameter(value: ParameterValue) -> pb.InferParameter:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        if value > INT64_MAX:
            return pb.InferParameter(uint64_param=value)
        return pb.InferParameter(int64_param=value)
    if isinstance(value, float):
        return pb.InferParameter(double_param=value)
    if isinstance(value, bytes):
        # InferParameter has no bytes field; keep what is text, mark what is not.
        return pb.InferParameter(string_param=value.decode("utf-8", "replace"))
    return pb.InferParameter(string_param=value)


def _tensor_parameters(
    kind: str, name: str, parameters: Mapping[str, pb.InferParameter]
) -> tuple[dict[str, ParameterValue], SharedMemoryReference | None]:
    """A tensor's parameters, and its shared memory placement taken out of them."""
    decoded = {key: parameter_value(key, value) for key, value in parameters.items()}
    return decoded, pop_reference(decoded, kind, name)


# -- requests ------------------------------------------------------------------------


def decode_infer_request(
    message: pb.ModelInferRequest,
    raw: Sequence[bytes | memoryview] | None = None,
    shm: SharedMemorySession | None = None,
) -> InferenceRequest:
    """Build the core request; raises :class:`NaiadError` with Triton's wording.

    ``raw`` replaces ``message.raw_input_contents`` when the wire layer already split
    the tensor bytes out (see :mod:`naiad.frontends.grpc.wire`). Tensors in client
    shared memory are resolved through ``shm`` (the request's session).
    """
    request = InferenceRequest(
        model_name=message.model_name,
        model_version=message.model_version,
        id=message.id,
        parameters=decode_request_parameters(message.parameters),
    )
    contents = message.raw_input_contents if raw is None else raw
    _Decoder(request, contents, shm).decode_inputs(message.inputs)
    if message.outputs:
        request.outputs = [_requested_output(output, shm) for output in message.outputs]
    return request


def _requested_output(
    output: pb.ModelInferRequest.InferRequestedOutputTensor,
    shm: SharedMemorySession | None = None,
) -> RequestedOutput:
    requested = RequestedOutput(output.name)
    if not output.parameters:
        return requested
    if "classification" in output.parameters:
        parameter = output.parameters["classification"]
        if parameter.WhichOneof("parameter_choice") != "int64_param":
            raise InvalidArgumentError(
                "invalid value type for 'classification' parameter, expected int64_param."
            )
        if parameter.int64_param < 0:
            raise InvalidArgumentError(
                f"invalid value for 'classification' of output '{output.name}', "
                "expected value >= 0."
            )
        requested.classification = parameter.int64_param
    requested.parameters, reference = _tensor_parameters("output", output.name, output.parameters)
    requested.parameters.pop("classification", None)
    if reference is not None:
        if shm is None:
            raise UnsupportedError(DISABLED_MESSAGE)
        requested.shared_memory = shm.output_target(reference)
    return requested


class _Decoder:
    """Decodes the inputs of one request; holds what every error message names."""

    def __init__(
        self,
        request: InferenceRequest,
        raw: Sequence[bytes | memoryview],
        shm: SharedMemorySession | None = None,
    ) -> None:
        self.request = request
        self.model = request.model_name
        self.prefix = request_prefix(request)
        self.raw = raw
        self.shm = shm

    def decode_inputs(self, tensors: Sequence[pb.ModelInferRequest.InferInputTensor]) -> None:
        append = self.request.inputs.append
        # Clients send raw contents only for inputs not in shared memory, in order, so
        # the raw index advances only for those (as Triton's infer_handler.cc reads them).
        index = 0
        for tensor in tensors:
            name = tensor.name
            # Most requests carry no tensor parameters: skip the map walk for them.
            parameters, reference = (
                _tensor_parameters("input", name, tensor.parameters)
                if tensor.parameters
                else ({}, None)
            )
            datatype = self._datatype(tensor)
            shape = tuple(tensor.shape)
            count = self._element_count(name, shape)
            if reference is not None:
                if self.shm is None:
                    raise UnsupportedError(DISABLED_MESSAGE)
                data = self.shm.read_input(
                    reference, datatype, shape, name, self.model, self.prefix
                )
            elif tensor.HasField("contents"):
                if self.raw:
                    raise InvalidArgumentError(
                        "contents field must not be specified when using raw_input_contents "
                        f"for '{name}' for model '{self.model}'"
                    )
                data = self._from_contents(name, datatype, shape, count, tensor.contents)
            elif self.raw:
                if index >= len(self.raw):
                    raise InvalidArgumentError(
                        f"unable to find data for input tensor '{name}' for model "
                        f"'{self.model}' in request."
                    )
                data = self._from_raw(name, datatype, shape, count, self.raw[index])
                index += 1
            else:
                # No data at all: Triton adds the input with an empty buffer, so only a
                # zero-element tensor passes the size check.
                data = self._from_raw(name, datatype, shape, count, b"")
            append(InferInput(name, datatype, shape, data, parameters))

    def _datatype(self, tensor: pb.ModelInferRequest.InferInputTensor) -> DataType:
        try:
            return DataType.from_wire(tensor.datatype)
        except InvalidArgumentError:
            raise InvalidArgumentError(
                f"{self.prefix}invalid datatype '{tensor.datatype}' for inference input "
                f"'{tensor.name}' for model '{self.model}'"
            ) from None

    def _element_count(self, name: str, shape: tuple[int, ...]) -> int:
        try:
            return element_count(shape)
        except NaiadError as exc:
            if any(dim < 0 for dim in shape):
                raise InvalidArgumentError(
                    f"{self.prefix}All input dimensions should be specified for input "
                    f"'{name}' for model '{self.model}', got {format_shape(shape)}"
                ) from None
            raise self._bad_shape(name, exc) from None

    def _bad_shape(self, name: str, error: NaiadError) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"{self.prefix}input '{name}' for model '{self.model}' has an {error.message}"
        )

    def _size_mismatch(self, name: str, expected: int, got: int) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"{self.prefix}input byte size mismatch for input '{name}' for model "
            f"'{self.model}'. Expected {expected}, got {got}"
        )

    def _string_count_mismatch(self, name: str, expected: int, got: int) -> InvalidArgumentError:
        if got > expected:
            # Triton stops counting one element past the expected count.
            return InvalidArgumentError(
                f"{self.prefix}unexpected number of string elements {expected + 1} for "
                f"inference input '{name}' for model '{self.model}', expecting {expected}"
            )
        return InvalidArgumentError(
            f"{self.prefix}expected {expected} string elements for inference input '{name}' "
            f"for model '{self.model}', got {got}"
        )

    def _from_raw(
        self,
        name: str,
        datatype: DataType,
        shape: tuple[int, ...],
        count: int,
        buffer: bytes | memoryview,
    ) -> np.ndarray:
        if datatype is DataType.BYTES:
            try:
                return array_from_bytes(datatype, shape, buffer)
            except InvalidArgumentError:
                raise self._bytes_error(name, count, buffer) from None
        expected = count * datatype.itemsize
        if expected > INT64_MAX:
            try:
                byte_size(datatype, shape)
            except NaiadError as exc:
                raise self._bad_shape(name, exc) from None
        if len(buffer) != expected:
            raise self._size_mismatch(name, expected, len(buffer))
        # The count is already checked, so view the message's bytes directly (no copy).
        return np.frombuffer(buffer, dtype=datatype.numpy_dtype).reshape(shape)

    def _bytes_error(
        self, name: str, expected: int, buffer: bytes | memoryview
    ) -> InvalidArgumentError:
        """Say what is wrong with a BYTES buffer that did not split into ``expected``."""
        view = memoryview(buffer)
        offset = count = 0
        # Walk the length prefixes without copying, and stop one past the expected count.
        while offset < len(view) and count <= expected:
            if offset + 4 > len(view):
                return InvalidArgumentError(
                    f"{self.prefix}element byte size indicator exceeds the end of the buffer "
                    f"for inference input '{name}' for model '{self.model}'."
                )
            (length,) = _LEN.unpack_from(view, offset)
            offset += 4 + length
            if offset > len(view):
                return InvalidArgumentError(
                    f"{self.prefix}string element {count} of inference input '{name}' for "
                    f"model '{self.model}' exceeds the end of the buffer."
                )
            count += 1
        return self._string_count_mismatch(name, expected, count)

    def _from_contents(
        self,
        name: str,
        datatype: DataType,
        shape: tuple[int, ...],
        count: int,
        contents: pb.InferTensorContents,
    ) -> np.ndarray:
        values: Sequence[object] | None = None
        carried = datatype
        for field, field_type in _CONTENT_FIELDS:
            field_values = getattr(contents, field)
            if not field_values:
                continue
            if values is not None:
                raise InvalidArgumentError(
                    f"unexpected explicit tensor data for input tensor '{name}' for model "
                    f"'{self.model}', binary data was already supplied."
                )
            if field_type is not _NARROWED.get(datatype, datatype):
                raise InvalidArgumentError(
                    f"unexpected explicit tensor data for input tensor '{name}' for model "
                    f"'{self.model}' of type '{field_type.value}', expected datatype "
                    f"'{datatype.value}'"
                )
            values, carried = field_values, field_type
        if values is None:
            values = ()
        if datatype is DataType.BYTES:
            if len(values) != count:
                raise self._string_count_mismatch(name, count, len(values))
            array = np.empty(count, dtype=np.object_)
            array[:] = list(values)
            return array.reshape(shape)
        if datatype in (DataType.FP16, DataType.BF16) and count:
            raise InvalidArgumentError(
                f"{datatype.value} input '{name}' for model '{self.model}' has no typed "
                "contents field; send it in raw_input_contents"
            )
        if len(values) != count:
            raise self._size_mismatch(
                name, count * datatype.itemsize, len(values) * datatype.itemsize
            )
        # Parse in the carrying type, then narrow: like Triton, INT8 keeps the low byte.
        array = np.fromiter(values, dtype=carried.numpy_dtype, count=count)
        return array.astype(datatype.numpy_dtype, copy=False).reshape(shape)


# -- responses -----------------------------------------------------------------------


def encode_infer_response(
    response: InferenceResponse, shm: SharedMemorySession | None = None
) -> InferResponseMessage:
    """One ``outputs`` entry and one raw contents entry per output, in order.

    Fixed-size outputs stay views of their arrays until the wire serializer joins them.
    Outputs the client placed in shared memory are written there (through ``shm``) and
    get an empty raw entry, as clients pair raw entries with outputs by index.
    """
    tensor = pb.ModelInferResponse.InferOutputTensor
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id,
        outputs=[
            tensor(name=o.name, datatype=o.datatype.value, shape=o.shape) for o in response.outputs
        ],
    )
    for key, value in response.parameters.items():
        message.parameters[key].CopyFrom(encode_parameter(value))
    raw: list[bytes | memoryview] = []
    for output in response.outputs:
        blob = array_to_wire_bytes(output.datatype, output.data)
        target = output.requested.shared_memory if output.requested is not None else None
        if target is not None and shm is not None:
            shm.write_output(target, output.name, blob)
            blob = b""
        raw.append(blob)
    return InferResponseMessage(message, raw)


def decode_load_parameters(
    parameters: Mapping[str, pb.ModelRepositoryParameter],
) -> tuple[str | None, dict[str, bytes]]:
    """The load RPC's ``config`` (``string_param``) and ``file:<path>`` (``bytes_param``)."""
    config: str | None = None
    files: dict[str, bytes] = {}
    for key, parameter in parameters.items():
        kind = parameter.WhichOneof("parameter_choice")
        if key == "config":
            if kind != "string_param":
                raise InvalidArgumentError("the 'config' parameter must be a string_param")
            config = parameter.string_param
        elif key.startswith("file:"):
            if kind != "bytes_param":
                raise InvalidArgumentError(f"the '{key[:80]}' parameter must be a bytes_param")
            files[key[len("file:") :]] = parameter.bytes_param
    return config, files
