"""Protocol-neutral inference request and response types.

Frontends decode the wire into these objects and encode them back; the core and the
backends see nothing else. One request object travels the whole way. Tensor data is
a numpy array (BYTES as an ``object`` array of ``bytes``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from naiad.tensors import DataType

# A request or response parameter value, as both protocols can carry it.
ParameterValue = bool | int | float | str | bytes


@dataclass(slots=True)
class InferInput:
    """One input tensor of a request; ``data`` has exactly ``shape``."""

    name: str
    datatype: DataType
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, ParameterValue] = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for, with its per-output options."""

    name: str
    # Top-k classification (the classification extension); 0 means off.
    classification: int = 0
    # HTTP only: None means "the request-level default".
    binary_data: bool | None = None
    parameters: dict[str, ParameterValue] = field(default_factory=dict)
    # Where the client wants the output written (the system shared memory extension).
    shared_memory: SharedMemoryTarget | None = None


@dataclass(frozen=True, slots=True)
class SharedMemoryTarget:
    """A checked place in a registered shared memory region: ``byte_size`` bytes at
    ``offset`` of the region's segment (core/shared_memory.py writes there)."""

    region: str
    offset: int
    byte_size: int


@dataclass(slots=True)
class InferenceRequest:
    """A decoded inference request addressed to one model (and optionally one version)."""

    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: list[InferInput] = field(default_factory=list)
    # None: the client named no outputs, so every output in the config is returned.
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, ParameterValue] = field(default_factory=dict)
    # Set by the core's streaming path: decoupled backends call it once per response
    # with (outputs by name, an error, or None for a flag-only send; final flag).
    response_sink: Callable[[Any, bool], None] | None = None
    # Set by a backend that can tell its model the client went away: the core calls it
    # when the request is cancelled (gRPC cancel, HTTP disconnect, stream closed early).
    cancel_hook: Callable[[], None] | None = None

    def input_map(self) -> dict[str, InferInput]:
        return {tensor.name: tensor for tensor in self.inputs}


@dataclass(slots=True)
class InferOutput:
    """One output tensor of a response."""

    name: str
    datatype: DataType
    shape: tuple[int, ...]
    data: np.ndarray
    # Echoes the matching RequestedOutput, so encoders know binary/JSON preference.
    requested: RequestedOutput | None = None


@dataclass(slots=True)
class InferenceResponse:
    """The result of one request."""

    model_name: str
    model_version: str
    id: str = ""
    outputs: list[InferOutput] = field(default_factory=list)
    parameters: dict[str, ParameterValue] = field(default_factory=dict)


def describe_parameters(parameters: dict[str, Any]) -> str:
    """A short, log-safe summary of parameter keys (values can be large or secret)."""
    return ",".join(sorted(parameters))
