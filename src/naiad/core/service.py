"""The protocol-neutral service both frontends call: health, metadata, config, inference.

Frontends translate wire messages into these calls and the results (or the
:class:`~naiad.errors.NaiadError` raised) back into wire messages; nothing here
knows about HTTP or gRPC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from naiad import __version__
from naiad.core.manager import IndexEntry, ModelControlMode, ModelManager
from naiad.core.model import ModelVersion
from naiad.core.shared_memory import SharedMemoryRegistry
from naiad.core.statistics import REJECTED
from naiad.core.streaming import StreamItem
from naiad.errors import NaiadError, UnavailableError
from naiad.inference import InferenceRequest, InferenceResponse

logger = logging.getLogger("naiad.service")

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
        self,
        manager: ModelManager,
        *,
        server_id: str = "naiad",
        strict_readiness: bool = True,
        shared_memory: SharedMemoryRegistry | None = None,
        max_inflight_requests: int = 0,
        extra_extensions: tuple[str, ...] = (),
    ) -> None:
        self.manager = manager
        # Client shared memory regions, used by both frontends (off unless enabled).
        self.shared_memory = shared_memory or SharedMemoryRegistry(enabled=False)
        extensions = EXTENSIONS + (("system_shared_memory",) if self.shared_memory.enabled else ())
        # Extensions served outside the core (trace, logging), announced when wired in.
        extensions += extra_extensions
        self._metadata = ServerMetadata(server_id, __version__, extensions)
        # Server-wide cap on inferences in flight (0: none); past it requests get 503.
        self._max_inflight = max_inflight_requests
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

    async def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return await self.manager.index(ready_only)

    def _require_explicit_mode(self) -> None:
        if self.manager.settings.control_mode is not ModelControlMode.EXPLICIT:
            raise UnavailableError(
                "explicit model load / unload is not allowed if polling is enabled"
            )

    async def load_model(
        self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        """The repository extension's load; returns once the model is ready, or raises."""
        self._require_explicit_mode()
        await self.manager.load(name, config_json, files)

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self._require_explicit_mode()
        # Dependents are the loaded ensembles that run the model as a step (Triton's meaning).
        dependents = self.manager.dependents(name) if unload_dependents else []
        await self.manager.unload(name)
        for dependent in dependents:
            await self.manager.unload(dependent)

    # -- inference -------------------------------------------------------------------

    def record_rejected(self, name: str, version: str = "") -> None:
        """Count a request the frontend refused (malformed) in its model's failures."""
        try:
            model = self.manager.get(name, version)
        except NaiadError:
            return  # not a known model: nothing to count it against
        model.record_rejected()

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        if self._shutting_down:
            raise UnavailableError("Server is shutting down and no longer accepts inferences")
        model = self.manager.get(request.model_name, request.model_version)
        if logger.isEnabledFor(logging.DEBUG):
            # Verbose only; the request id is the client's text, escaped by the formatter.
            logger.debug(
                "inference request for model '%s' version %d, id '%s'",
                model.name,
                model.version,
                request.id,
            )
        if self._max_inflight and self._in_flight >= self._max_inflight:
            model.stats.record_failure(0, REJECTED)
            raise UnavailableError(
                f"Server has its maximum of {self._max_inflight} inference requests in "
                "flight (--max-inflight-requests); retry later"
            )
        self._in_flight += 1
        try:
            return await model.infer(request)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def infer_stream(self, request: InferenceRequest) -> AsyncIterator[StreamItem]:
        """Streamed inference (core/streaming.py): errors before the model runs raise;
        later ones come as items; the last item is final."""
        if self._shutting_down:
            raise UnavailableError("Server is shutting down and no longer accepts inferences")
        model = self.manager.get(request.model_name, request.model_version)
        if self._max_inflight and self._in_flight >= self._max_inflight:
            model.stats.record_failure(0, REJECTED)
            raise UnavailableError(
                f"Server has its maximum of {self._max_inflight} inference requests in "
                "flight (--max-inflight-requests); retry later"
            )
        self._in_flight += 1
        try:
            async for item in model.infer_stream(request):
                yield item
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()
