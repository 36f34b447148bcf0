"""The protocol-neutral service both frontends call: health, metadata, config, inference.

Frontends translate wire messages into these calls and the results (or the
:class:`~naiad.errors.NaiadError` raised) back into wire messages; nothing here
knows about HTTP or gRPC.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from naiad import __version__
from naiad.core.manager import IndexEntry, ModelManager
from naiad.core.model import ModelVersion
from naiad.errors import UnavailableError
from naiad.inference import InferenceRequest, InferenceResponse

# Only the extensions that really work are announced.
EXTENSIONS = (
    "classification",
    "model_configuration",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "schedule_policy",
)


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class InferenceService:
    def __init__(
        self, manager: ModelManager, *, server_id: str = "naiad", strict_readiness: bool = True
    ) -> None:
        self.manager = manager
        self._metadata = ServerMetadata(server_id, __version__, EXTENSIONS)
        self._strict_readiness = strict_readiness
        self._started = False
        self._shutting_down = False
        self._in_flight = 0
        self._idle: asyncio.Event | None = None

    # -- lifecycle -----------------------------------------------------------------

    def mark_started(self) -> None:
        self._started = True

    def begin_shutdown(self) -> None:
        """Stop reporting ready and refuse new inferences; in-flight ones go on."""
        self._shutting_down = True

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no inference is in flight; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while self._in_flight:
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), remaining)
            except TimeoutError:
                return False
        return True

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- health and metadata ---------------------------------------------------------

    def server_live(self) -> bool:
        return True

    def server_ready(self) -> bool:
        if not self._started or self._shutting_down:
            return False
        return self.manager.all_ready() if self._strict_readiness else True

    def server_metadata(self) -> ServerMetadata:
        return self._metadata

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.manager.is_ready(name, version)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self.manager.get(name, version)
        config = model.config
        versions = (
            [model.version_str]
            if version
            else [v.version_str for v in self.manager.ready_versions(name)]
        )
        batch = model.io.max_batch_size
        return ModelMetadata(
            name=name,
            versions=versions,
            platform=config.platform or config.backend,
            inputs=[
                TensorMetadata(s.name, s.datatype.value, s.full_shape(batch))
                for s in model.io.inputs.values()
            ],
            outputs=[
                TensorMetadata(s.name, s.datatype.value, s.full_shape(batch))
                for s in model.io.outputs.values()
            ],
        )

    def model_config(self, name: str, version: str = "") -> mc.ModelConfig:
        return self.manager.get(name, version).config

    def model_statistics(self, name: str = "", version: str = "") -> list[ModelVersion]:
        """Versions whose statistics to report: all ready ones, or those of one model."""
        if not name:
            return self.manager.all_ready_versions()
        if version:
            return [self.manager.get(name, version)]
        self.manager.get(name)  # Triton's error when the model has no ready version
        return self.manager.ready_versions(name)

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        entries = self.manager.index()
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    # -- inference -------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        if self._shutting_down:
            raise UnavailableError("Server is shutting down and no longer accepts inferences")
        model = self.manager.get(request.model_name, request.model_version)
        self._in_flight += 1
        try:
            return await model.infer(request)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()
