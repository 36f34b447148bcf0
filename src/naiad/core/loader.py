"""Turn a model directory into ready :class:`ModelVersion` objects (blocking; run off the loop).

The steps follow Triton: read ``config.pbtxt`` (or start empty), check the name,
resolve the backend from platform or files, let the backend auto-complete, fill
defaults and validate, apply the version policy, then create every instance of
every selected version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import InstanceSpec, ModelContext, ModelInstance
from naiad.backends.registry import BackendRegistry
from naiad.config.model_config import DEFAULT_CONFIG_NAME, normalize, read_config, resolve_backend
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
    config_name: str = DEFAULT_CONFIG_NAME
    # Set when --rate-limit=execution_count: one pool of resources for every model.
    rate_limiter: RateLimiter | None = None


class ModelLoader:
    def __init__(self, registry: BackendRegistry, settings: LoaderSettings) -> None:
        self._registry = registry
        self._settings = settings

    def load_config(self, name: str, model_dir: Path) -> mc.ModelConfig:
        """The model's complete, validated config (auto-completed when enabled)."""
        source = str(model_dir / self._settings.config_name)
        config = read_config(model_dir, self._settings.config_name)
        if config is None:
            if not self._settings.auto_complete_config:
                raise ModelConfigError(
                    f"model configuration {source} is missing and auto-complete is disabled"
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
        resolve_backend(config, [versions[v] for v in sorted(versions, reverse=True)], source)
        if config.platform == "ensemble":
            raise ModelLoadError(f"model '{name}': ensembles are not supported by this server yet")
        backend = self._registry.get(config.backend)
        if self._settings.auto_complete_config:
            backend.auto_complete_config(
                config, model_dir, [versions[v] for v in sorted(versions, reverse=True)]
            )
        normalize(config, source)
        return config

    def load(self, name: str, model_dir: Path) -> list[ModelVersion]:
        """Load every version the policy selects; a version that fails is UNAVAILABLE."""
        config = self.load_config(name, model_dir)
        available = version_dirs(model_dir)
        chosen = select_versions(config, available, str(model_dir / self._settings.config_name))
        backend = self._registry.get(config.backend)
        loaded: list[ModelVersion] = []
        for version in chosen:
            model = ModelVersion(name=name, version=version, config=config, model_dir=model_dir)
            context = ModelContext(name=name, version=version, config=config, model_dir=model_dir)
            instances: list[ModelInstance] = []
            try:
                slots: list[InstanceSlot] = []
                for group in config.instance_group:
                    resources = {r.name: r.count for r in group.rate_limiter.resources}
                    if self._settings.rate_limiter is not None:
                        self._settings.rate_limiter.register(resources, name)
                    for index in range(group.count):
                        spec = InstanceSpec(group.name, index, group.kind)
                        instance = backend.create_instance(context, spec)
                        instances.append(instance)
                        # Passive instances are loaded but get no work (Triton's meaning).
                        if not group.passive:
                            slots.append(
                                InstanceSlot(instance, resources, group.rate_limiter.priority)
                            )
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
                )
            except NaiadError as exc:
                for instance in instances:
                    instance.close()
                model.state = ModelState.UNAVAILABLE
                model.reason = failure_reason(exc)
                logger.error("failed to load '%s' version %d: %s", name, version, model.reason)
            except Exception as exc:  # a backend bug must not take the server down
                for instance in instances:
                    instance.close()
                model.state = ModelState.UNAVAILABLE
                model.reason = f"Internal: {type(exc).__name__}: {exc}"
                logger.exception("failed to load '%s' version %d", name, version)
            else:
                model.state = ModelState.READY
                logger.info("successfully loaded '%s' version %d", name, version)
            loaded.append(model)
        return loaded
