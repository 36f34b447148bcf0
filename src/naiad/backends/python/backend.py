"""The python backend: ``backend: "python"`` models and python-based backends.

Auto-complete runs the model class's static ``auto_complete_config`` in a short-lived
worker (as Triton does: objects made there do not survive). Each instance is a
``PythonInstance`` with a worker of its own. Settings (environment variables):

* ``NAIAD_PYTHON_SHM=0`` sends every tensor through the socket instead of shared
  memory (memfd); shared memory is also off where memfds cannot be made.
* ``NAIAD_PYTHON_SHM_THRESHOLD_BYTES`` (default 16 MiB): tensors at least this large
  go through shared memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import orjson
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import Backend, InstanceSpec, ModelContext, ModelInstance
from naiad.backends.python.environments import model_interpreter
from naiad.backends.python.instance import PythonInstance, WorkerSpec, start_worker
from naiad.backends.python.runtime._naiad_pb.messages import (
    AUTO_COMPLETE_DONE,
    AutoCompleteDoneMsg,
    AutoCompleteMsg,
    InitMsg,
)
from naiad.backends.python.runtime._naiad_pb.wire import (
    DEFAULT_SHM_THRESHOLD_BYTES,
    memfd_supported,
)
from naiad.backends.python.sources import ModelSource, python_model_source
from naiad.backends.python.worker_process import WorkerProcess
from naiad.config.model_config import config_to_json_dict
from naiad.errors import ModelConfigError, ModelLoadError

logger = logging.getLogger("naiad.python")

SHM_SETTING = "NAIAD_PYTHON_SHM"
SHM_THRESHOLD_SETTING = "NAIAD_PYTHON_SHM_THRESHOLD_BYTES"
_KIND_NAMES = {
    mc.ModelInstanceGroup.KIND_CPU: "CPU",
    mc.ModelInstanceGroup.KIND_GPU: "GPU",
    mc.ModelInstanceGroup.KIND_MODEL: "MODEL",
    mc.ModelInstanceGroup.KIND_AUTO: "AUTO",
}


def shared_memory_enabled() -> bool:
    setting = os.environ.get(SHM_SETTING, "1").strip().lower()
    return setting not in ("0", "false", "off", "no") and memfd_supported()


def shm_threshold_bytes() -> int:
    raw = os.environ.get(SHM_THRESHOLD_SETTING, "")
    return int(raw) if raw.strip().isdigit() else DEFAULT_SHM_THRESHOLD_BYTES


def label_of(name: str, version: int, instance: str = "") -> str:
    text = f"model '{name}' version {version}"
    return f"{text} instance '{instance}'" if instance else text


# Beyond Triton: ``parameters { key: "naiad_stack_batch" value: { string_value: "true" } }``
# hands execute() one request whose tensors hold the whole dynamic batch.
STACK_BATCH_PARAMETER = "naiad_stack_batch"


def stack_batch_requested(config: mc.ModelConfig) -> bool:
    if STACK_BATCH_PARAMETER not in config.parameters:
        return False
    value = config.parameters[STACK_BATCH_PARAMETER].string_value.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ModelConfigError(
            f"model '{config.name}': parameter '{STACK_BATCH_PARAMETER}' must be true or false, "
            f"got '{value}'"
        )
    if value in ("true", "1", "yes", "on") and config.max_batch_size <= 0:
        raise ModelConfigError(
            f"model '{config.name}': '{STACK_BATCH_PARAMETER}' needs max_batch_size > 0"
        )
    return value in ("true", "1", "yes", "on")


# Beyond Triton: ``parameters { key: "naiad_execute_timeout_s" value: { string_value: "30" } }``
# kills and restarts a worker whose execute runs longer (a hung model); off when absent or 0.
EXECUTE_TIMEOUT_PARAMETER = "naiad_execute_timeout_s"


def execute_timeout_s(config: mc.ModelConfig) -> float | None:
    if EXECUTE_TIMEOUT_PARAMETER not in config.parameters:
        return None
    raw = config.parameters[EXECUTE_TIMEOUT_PARAMETER].string_value.strip()
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # NaN, negative, infinite
        raise ModelConfigError(
            f"model '{config.name}': parameter '{EXECUTE_TIMEOUT_PARAMETER}' must be a number "
            f"of seconds >= 0, got '{raw}'"
        )
    return value or None


class PythonBackend(Backend):
    name = "python"

    def __init__(self) -> None:
        self._shared_memory = shared_memory_enabled()
        self._threshold = shm_threshold_bytes()
        logger.debug(
            "python backend: tensors of %d bytes or more go through %s",
            self._threshold,
            "shared memory (memfd)" if self._shared_memory else "the socket (shared memory off)",
        )

    def auto_complete_config(
        self, config: mc.ModelConfig, model_dir: Path, version_dirs: Sequence[Path]
    ) -> None:
        if not version_dirs:
            return
        version = int(version_dirs[0].name)
        self.complete_config(config, model_dir, python_model_source(model_dir, version, config))

    def create_instance(self, context: ModelContext, spec: InstanceSpec) -> ModelInstance:
        source = python_model_source(context.model_dir, context.version, context.config)
        return self.start_instance(context, spec, source)

    # -- shared with python-based backends -----------------------------------------------

    def complete_config(self, config: mc.ModelConfig, model_dir: Path, source: ModelSource) -> None:
        """Run ``TritonPythonModel.auto_complete_config`` and keep what it may change."""
        label = f"model '{config.name}'"
        worker = WorkerProcess.spawn(model_interpreter(config, model_dir, label), label)
        try:
            message = AutoCompleteMsg(
                module_file=str(source.module_file),
                module_name=source.module_name,
                sys_paths=list(source.sys_paths),
                model_dir=str(source.model_dir),
                log_verbose=self._log_verbose(),
                model_name=config.name,
                model_config=orjson.dumps(config_to_json_dict(config)).decode(),
            )
            frame = worker.exchange(message.to_header(), AUTO_COMPLETE_DONE)
        finally:
            worker.stop()
        done = AutoCompleteDoneMsg.from_header(frame.header)
        if done.error is not None:
            raise ModelLoadError(f"{label}: auto_complete_config failed: {done.error}")
        if done.model_config is not None:
            merge_completed_config(config, done.model_config)

    def start_instance(
        self, context: ModelContext, spec: InstanceSpec, source: ModelSource
    ) -> PythonInstance:
        config = context.config
        label = label_of(context.name, context.version, spec.name)
        timeout_s = execute_timeout_s(config)
        init = InitMsg(
            module_file=str(source.module_file),
            module_name=source.module_name,
            sys_paths=list(source.sys_paths),
            model_dir=str(source.model_dir),
            log_verbose=self._log_verbose(),
            args={
                "model_config": orjson.dumps(config_to_json_dict(config)).decode(),
                "model_instance_kind": _KIND_NAMES.get(spec.kind, "CPU"),
                "model_instance_name": spec.name,
                "model_instance_device_id": str(spec.device_id),
                "model_repository": str(context.model_dir),
                "model_version": str(context.version),
                "model_name": context.name,
            },
            instance_name=spec.name,
            decoupled=config.model_transaction_policy.decoupled,
            shared_memory=self._shared_memory,
            shm_threshold_bytes=self._threshold,
        )
        worker_spec = WorkerSpec(model_interpreter(config, context.model_dir, label), init, label)
        worker, done = start_worker(worker_spec)
        logger.info(
            "%s: worker pid %d started with %s",
            label,
            worker.pid,
            worker_spec.interpreter.description,
        )
        instance = PythonInstance(worker_spec, worker, done)
        instance.stacks_batches = stack_batch_requested(config)
        if instance.stacks_batches and config.model_transaction_policy.decoupled:
            instance.close()
            raise ModelConfigError(
                f"model '{context.name}': '{STACK_BATCH_PARAMETER}' cannot be used by a "
                "decoupled model"
            )
        instance.execute_timeout_s = timeout_s
        instance.decoupled = config.model_transaction_policy.decoupled
        return instance

    @staticmethod
    def _log_verbose() -> int:
        return 1 if logging.getLogger("naiad").isEnabledFor(logging.DEBUG) else 0


def merge_completed_config(config: mc.ModelConfig, completed_json: str) -> None:
    """Take from the model's completed config what Triton lets auto-complete set."""
    try:
        raw = orjson.loads(completed_json)
        completed = json_format.ParseDict(raw, mc.ModelConfig(), ignore_unknown_fields=True)
    except (orjson.JSONDecodeError, json_format.ParseError) as exc:
        raise ModelConfigError(
            f"model '{config.name}': auto_complete_config produced an invalid config: {exc}"
        ) from None
    config.max_batch_size = completed.max_batch_size
    del config.input[:]
    config.input.extend(completed.input)
    del config.output[:]
    config.output.extend(completed.output)
    if "dynamic_batching" in raw and not config.HasField("sequence_batching"):
        config.dynamic_batching.CopyFrom(completed.dynamic_batching)
    if "model_transaction_policy" in raw:
        config.model_transaction_policy.CopyFrom(completed.model_transaction_policy)
