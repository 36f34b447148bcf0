"""Runs backends written against the Naiad backend API (``api.py``) inside the server.

Keeps Triton's lifecycle: the backend is initialized before its first model and
finalized after its last; a model version is initialized with its first instance and
finalized after its last; each instance is initialized and finalized on its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import (
    Backend,
    ExecuteResult,
    ExecutionTimes,
    InstanceSpec,
    ModelContext,
    ModelInstance,
)
from naiad.backends.python import api
from naiad.config.model_config import config_to_json_dict
from naiad.errors import ErrorCode, InternalError, ModelLoadError, NaiadError, error_for_code
from naiad.inference import InferenceRequest

logger = logging.getLogger("naiad.python")

_KIND_NAMES = {mc.ModelInstanceGroup.KIND_GPU: "GPU", mc.ModelInstanceGroup.KIND_MODEL: "MODEL"}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _as_naiad_error(error: api.BackendError) -> NaiadError:
    code = ErrorCode.__members__.get(str(error.code), ErrorCode.INTERNAL)
    return error_for_code(code, error.message)


class NaiadApiBackend(Backend):
    """Adapts one ``api.Backend`` object (shared by every model naming it)."""

    def __init__(self, name: str, backend: api.Backend) -> None:
        self.name = name
        self.user = backend
        self._lock = threading.Lock()
        self._started = False
        # (model, version) -> [ModelInfo, live instances]
        self._models: dict[tuple[str, int], list[Any]] = {}

    def auto_complete_config(
        self, config: mc.ModelConfig, model_dir: Path, version_dirs: Sequence[Path]
    ) -> None:
        try:
            completed = self.user.auto_complete_config(config_to_json_dict(config))
        except Exception as exc:
            raise ModelLoadError(
                f"backend '{self.name}': auto_complete_config failed for model "
                f"'{config.name}': {_describe(exc)}"
            ) from exc
        if completed is not None:
            try:
                parsed = json_format.ParseDict(completed, mc.ModelConfig())
            except json_format.ParseError as exc:
                raise ModelLoadError(
                    f"backend '{self.name}': auto_complete_config returned an invalid config "
                    f"for model '{config.name}': {exc}"
                ) from None
            config.CopyFrom(parsed)

    def create_instance(self, context: ModelContext, spec: InstanceSpec) -> ModelInstance:
        key = (context.name, context.version)
        with self._lock:
            if not self._started:
                self._call("initialize", context.name)
                self._started = True
            entry = self._models.get(key)
            if entry is None:
                model = api.ModelInfo(
                    context.name,
                    context.version,
                    config_to_json_dict(context.config),
                    context.model_dir,
                )
                self._call("model_initialize", context.name, model)
                entry = [model, 0]
                self._models[key] = entry
            entry[1] += 1
        info = api.InstanceInfo(
            spec.name, _KIND_NAMES.get(spec.kind, "CPU"), spec.device_id, entry[0]
        )
        try:
            self._call("instance_initialize", context.name, info)
        except BaseException:
            self._release_model(key)
            raise
        return NaiadApiInstance(self, key, info)

    def _call(self, hook: str, model: str, *args: Any) -> None:
        try:
            getattr(self.user, hook)(*args)
        except Exception as exc:
            raise ModelLoadError(
                f"backend '{self.name}': {hook} failed for model '{model}': {_describe(exc)}"
            ) from exc

    def release(self, key: tuple[str, int], info: api.InstanceInfo) -> None:
        try:
            self.user.instance_finalize(info)
        except Exception:
            logger.exception("backend '%s': instance_finalize of '%s' failed", self.name, info.name)
        self._release_model(key)

    def _release_model(self, key: tuple[str, int]) -> None:
        with self._lock:
            entry = self._models[key]
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._models[key]
            try:
                self.user.model_finalize(entry[0])
            except Exception:
                logger.exception("backend '%s': model_finalize of '%s' failed", self.name, key[0])
            if not self._models and self._started:
                self._started = False
                try:
                    self.user.finalize()
                except Exception:
                    logger.exception("backend '%s': finalize failed", self.name)


class NaiadApiInstance(ModelInstance):
    stacks_batches = False

    def __init__(self, owner: NaiadApiBackend, key: tuple[str, int], info: api.InstanceInfo):
        self._owner = owner
        self._key = key
        self._info = info
        self._is_async = inspect.iscoroutinefunction(owner.user.instance_execute)
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        if not self._is_async:
            self._thread = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"naiad-{owner.name}"
            )
        self._closed = False

    async def execute(
        self,
        requests: Sequence[InferenceRequest],
        output_names: Sequence[str],
        times: ExecutionTimes,
    ) -> list[ExecuteResult]:
        batch = [
            api.Request(
                request.id,
                {tensor.name: tensor.data for tensor in request.inputs},
                dict(request.parameters),
                [o.name for o in request.outputs]
                if request.outputs is not None
                else list(output_names),
            )
            for request in requests
        ]
        execute = self._owner.user.instance_execute
        try:
            if self._thread is None:
                responses = await execute(self._info, batch)  # type: ignore[misc]
            else:
                loop = asyncio.get_running_loop()
                responses = await loop.run_in_executor(self._thread, execute, self._info, batch)
        except api.BackendError as exc:
            raise _as_naiad_error(exc) from None
        except Exception as exc:
            raise InternalError(
                f"backend '{self._owner.name}' failed to execute on '{self._info.name}': "
                f"{_describe(exc)}"
            ) from exc
        if not isinstance(responses, list) or len(responses) != len(requests):
            raise InternalError(
                f"backend '{self._owner.name}' must answer {len(requests)} request(s) with as "
                "many Response objects"
            )
        results: list[ExecuteResult] = []
        for response in responses:
            if response.error is not None:
                results.append(_as_naiad_error(response.error))
            else:
                results.append(dict(response.outputs))
        return results

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        self._owner.release(self._key, self._info)
