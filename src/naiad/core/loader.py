"""Turn a model directory into :class:`ModelVersion` objects (blocking; run off the loop).

The steps follow Triton: read the config (``configs/<name>.pbtxt`` when
``--model-config-name`` is set, else ``config.pbtxt``; or start empty), check the name,
resolve the backend from platform or files, let the backend auto-complete, fill
defaults and validate, apply the version policy, then create every instance of every
selected version. Versions come back LOADING (or UNAVAILABLE with the reason); the
manager runs warmup and marks them READY.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import Backend, InstanceSpec, ModelContext, ModelInstance
from naiad.backends.registry import BackendRegistry
from naiad.config.ensemble import plan_ensemble
from naiad.config.model_config import DEFAULT_CONFIG_NAME, normalize, read_config, resolve_backend
from naiad.core.ensemble import EnsembleScheduler, StepResolver
from naiad.core.model import ModelState, ModelVersion, failure_reason
from naiad.core.scheduling.base import InstanceSlot
from naiad.core.scheduling.factory import build_scheduler
from naiad.core.scheduling.rate_limiter import RateLimiter
from naiad.errors import ModelConfigError, ModelLoadError, NaiadError
from naiad.repository.scanner import select_versions, version_dirs

logger = logging.getLogger("naiad.loader")


@dataclass(frozen=True, slots=True)
class LoaderSettings:
    auto_complete_config: bool = True
    # --model-config-name: use configs/<name>.pbtxt where a model has one.
    config_name: str = ""
    # Set when --rate-limit=execution_count: one pool of resources for every model.
    rate_limiter: RateLimiter | None = None


def config_path(model_dir: Path, config_name: str) -> Path:
    """The config file a model uses: ``configs/<name>.pbtxt`` if present, else the default."""
    if config_name:
        custom = model_dir / "configs" / f"{config_name}.pbtxt"
        if custom.is_file():
            return custom
    return model_dir / DEFAULT_CONFIG_NAME


class ModelLoader:
    def __init__(self, registry: BackendRegistry, settings: LoaderSettings) -> None:
        self._registry = registry
        self._settings = settings
        # Set by the model manager: how an ensemble finds its step models at request time.
        self.step_resolver: StepResolver | None = None

    @property
    def settings(self) -> LoaderSettings:
        return self._settings

    def load_config(
        self, name: str, model_dir: Path, override: mc.ModelConfig | None = None
    ) -> mc.ModelConfig:
        """The model's complete, validated config (auto-completed when enabled)."""
        path = config_path(model_dir, self._settings.config_name)
        source = "the load request's 'config'" if override is not None else str(path)
        if override is not None:
            config = mc.ModelConfig()
            config.CopyFrom(override)
        else:
            config = read_config(path.parent, path.name)
        if config is None:
            if not self._settings.auto_complete_config:
                raise ModelConfigError(
                    f"model configuration {path} is missing and auto-complete is disabled"
                )
            config = mc.ModelConfig()
        if not config.name:
            config.name = name
        elif config.name != name:
            raise ModelConfigError(
                f"unexpected directory name '{name}' for model '{config.name}', directory "
                f"name must equal model name ({source}: field 'name')"
            )
        versions = version_dirs(model_dir)
        newest_first = [versions[v] for v in sorted(versions, reverse=True)]
        resolve_backend(config, newest_first, source)
        if config.platform == "ensemble":
            # No backend: nothing to auto-complete, and the steps are checked here.
            normalize(config, source)
            plan_ensemble(config, source)
            return config
        backend = self._registry.get(config.backend)
        if self._settings.auto_complete_config:
            backend.auto_complete_config(config, model_dir, newest_first)
        normalize(config, source)
        return config

    def step_models(self, model_dir: Path, override: mc.ModelConfig | None) -> list[str] | None:
        """The models an ensemble's steps name (None: not an ensemble), read without checks.

        The manager loads these before the ensemble; a config that does not parse is
        reported by the load itself, so here it just counts as no ensemble.
        """
        config = override
        if config is None:
            path = config_path(model_dir, self._settings.config_name)
            try:
                config = read_config(path.parent, path.name)
            except NaiadError:
                return None
        if config is None or config.platform != "ensemble":
            return None
        return list(dict.fromkeys(s.model_name for s in config.ensemble_scheduling.step))

    def load(
        self, name: str, model_dir: Path, override: mc.ModelConfig | None = None
    ) -> list[ModelVersion]:
        """Load every version the policy selects; a version that fails is UNAVAILABLE."""
        config = self.load_config(name, model_dir, override)
        chosen = select_versions(config, version_dirs(model_dir), str(model_dir))
        if config.platform == "ensemble":
            return [self._load_ensemble(config, model_dir, name, v) for v in chosen]
        backend = self._registry.get(config.backend)
        return [self._load_version(backend, config, model_dir, name, v) for v in chosen]

    def _load_version(
        self, backend: Backend, config: mc.ModelConfig, model_dir: Path, name: str, version: int
    ) -> ModelVersion:
        model = ModelVersion(name=name, version=version, config=config, model_dir=model_dir)
        context = ModelContext(name=name, version=version, config=config, model_dir=model_dir)
        instances: list[ModelInstance] = []
        try:
            slots: list[InstanceSlot] = []
            for group in config.instance_group:
                group_slots = self.create_slots(backend, context, group, range(group.count))
                instances.extend(slot.instance for slot in group_slots)
                # Passive instances are loaded but get no work (Triton's meaning).
                if not group.passive:
                    slots.extend(group_slots)
            if not slots:
                raise ModelConfigError(
                    f"model '{name}' has no non-passive instance to schedule requests on"
                )
            model.scheduler = build_scheduler(
                config,
                slots,
                model.stats,
                self._settings.rate_limiter,
                stacks_batches=getattr(instances[0], "stacks_batches", True),
                model_dir=model_dir,
            )
            model.passive_instances = [i for i in instances if i not in model.scheduler.instances]
        except NaiadError as exc:
            _close_all(instances)
            model.state = ModelState.UNAVAILABLE
            model.reason = failure_reason(exc)
            logger.error("failed to load '%s' version %d: %s", name, version, model.reason)
        except Exception as exc:  # a backend bug must not take the server down
            _close_all(instances)
            model.state = ModelState.UNAVAILABLE
            model.reason = f"Internal: {type(exc).__name__}: {exc}"
            logger.exception("failed to load '%s' version %d", name, version)
        return model

    def _load_ensemble(
        self, config: mc.ModelConfig, model_dir: Path, name: str, version: int
    ) -> ModelVersion:
        """An ensemble version: no instances, a scheduler that calls the step models."""
        if self.step_resolver is None:
            raise ModelLoadError(f"model '{name}': ensembles need a model manager to run")
        model = ModelVersion(name=name, version=version, config=config, model_dir=model_dir)
        steps = plan_ensemble(config, str(model_dir))
        # An ensemble with a decoupled step streams 0..N responses, so it is served (and
        # its config reported) as decoupled. Its steps are loaded before it.
        for step in steps:
            with contextlib.suppress(NaiadError):
                if self.step_resolver(step.model_name, step.model_version).decoupled:
                    config.model_transaction_policy.decoupled = True
        model.scheduler = EnsembleScheduler(config, steps, self.step_resolver, model.stats)
        return model

    def create_slots(
        self,
        backend: Backend,
        context: ModelContext,
        group: mc.ModelInstanceGroup,
        indices: range,
    ) -> list[InstanceSlot]:
        """Create the instances ``indices`` of one instance group (blocking)."""
        resources = {r.name: r.count for r in group.rate_limiter.resources}
        if self._settings.rate_limiter is not None:
            self._settings.rate_limiter.register(resources, context.name)
        slots: list[InstanceSlot] = []
        try:
            for index in indices:
                spec = InstanceSpec(group.name, index, group.kind)
                instance = backend.create_instance(context, spec)
                slots.append(InstanceSlot(instance, resources, group.rate_limiter.priority))
        except BaseException:
            _close_all([slot.instance for slot in slots])
            raise
        return slots

    def backend_for(self, config: mc.ModelConfig) -> Backend:
        return self._registry.get(config.backend)


def _close_all(instances: list[ModelInstance]) -> None:
    for instance in instances:
        try:
            instance.close()
        except Exception:  # closing what failed to load must not hide the load error
            logger.exception("error closing an instance")
