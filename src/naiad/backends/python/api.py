"""The Naiad backend API: write a backend in Python, install it with pip, name it in configs.

A backend is a class deriving from :class:`Backend`, published under the entry-point
group ``naiad.backends``; the entry point's name is what ``backend: "<name>"`` in a
``config.pbtxt`` refers to. The lifecycle is Triton's backend API:

* ``initialize`` / ``finalize``: once per server process (the first model that names
  the backend starts it, the last one unloaded finalizes it);
* ``model_initialize`` / ``model_finalize``: once per loaded model version;
* ``instance_initialize`` / ``instance_finalize``: once per instance of the model's
  ``instance_group``;
* ``instance_execute``: a batch of requests for one instance, answered with one
  :class:`Response` per request (or a :class:`BackendError` for the whole batch).

Backends run inside the server process: a plain ``def instance_execute`` runs on a
thread of its own per instance, an ``async def`` one on the server's event loop (it
must not block). ``docs/custom-backends.md`` has a complete example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ENTRY_POINT_GROUP = "naiad.backends"


class BackendError(Exception):
    """An error with a Triton error code: fails one request (in a Response) or the batch."""

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        super().__init__(message)
        self.message = message
        # One of UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED,
        # ALREADY_EXISTS, CANCELLED.
        self.code = code


@dataclass(slots=True)
class ModelInfo:
    """A loaded model version. ``state`` is yours: keep per-model objects there."""

    name: str
    version: int
    # The complete configuration, as Triton's JSON (what GET .../config returns).
    config: dict[str, Any]
    model_dir: Path
    state: Any = None

    @property
    def version_dir(self) -> Path:
        return self.model_dir / str(self.version)

    @property
    def parameters(self) -> dict[str, str]:
        """The config's ``parameters`` as plain strings."""
        raw = self.config.get("parameters", {})
        return {key: str(value.get("string_value", "")) for key, value in raw.items()}


@dataclass(slots=True)
class InstanceInfo:
    """One instance of a model. ``state`` is yours: keep per-instance objects there."""

    name: str
    # "CPU", "GPU" or "MODEL", as Triton's instance kinds.
    kind: str
    device_id: int
    model: ModelInfo
    state: Any = None


@dataclass(slots=True)
class Request:
    id: str
    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any]
    # Outputs to produce for this request (every output of the config if it named none).
    requested_output_names: list[str]


@dataclass(slots=True)
class Response:
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    # When set, this request fails with the error and its outputs are ignored.
    error: BackendError | None = None


class Backend:
    """Subclass and override what you need; only ``instance_execute`` is required."""

    def initialize(self) -> None:
        """The backend starts (before its first model)."""

    def finalize(self) -> None:
        """The backend stops (after its last model is unloaded)."""

    def auto_complete_config(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """Complete a model's config (Triton's JSON form); return it, or None to keep it.

        Runs at load unless auto-complete is disabled, before ``model_initialize``.
        """
        return None

    def model_initialize(self, model: ModelInfo) -> None:
        """A model version is being loaded."""

    def model_finalize(self, model: ModelInfo) -> None:
        """A model version was unloaded (after its instances)."""

    def instance_initialize(self, instance: InstanceInfo) -> None:
        """An instance is being created."""

    def instance_finalize(self, instance: InstanceInfo) -> None:
        """An instance is being destroyed."""

    def instance_execute(self, instance: InstanceInfo, requests: list[Request]) -> list[Response]:
        """Answer a batch: one Response per request, in order (may be ``async def``)."""
        raise NotImplementedError
