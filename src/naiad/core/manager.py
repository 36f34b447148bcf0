"""The model manager: which models exist, their versions and states, loading and reloading.

Lookups follow Triton: no version (or ``""``) means the highest READY version; the
error texts are Triton's ``Request for unknown model: ...`` family.

Changes never drop a request. A (re)load builds the new versions beside the old ones,
warms them up, then swaps them in with one assignment on the event loop; requests
already running on the old versions finish before those are unloaded. A reload that
fails leaves the old versions serving, with the failure as the model's reason. A change
of ``instance_group`` counts alone adds or retires instances in place.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import ModelContext
from naiad.config.model_config import parse_config_json
from naiad.core.loader import ModelLoader, config_path
from naiad.core.model import ModelState, ModelVersion, failure_reason
from naiad.core.warmup import run_warmup
from naiad.errors import (
    InternalError,
    InvalidArgumentError,
    NaiadError,
    NotFoundError,
    UnavailableError,
)
from naiad.repository.fingerprint import directory_fingerprint
from naiad.repository.override import materialize_override
from naiad.repository.scanner import ModelLocation, is_valid_model_name, scan_repositories

logger = logging.getLogger("naiad.manager")
T = TypeVar("T")


class ModelControlMode(enum.Enum):
    NONE = "none"
    POLL = "poll"
    EXPLICIT = "explicit"


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    control_mode: ModelControlMode = ModelControlMode.NONE
    # Explicit mode: models to load at start-up ("*" for all).
    startup_models: tuple[str, ...] = ()
    load_thread_count: int = 4
    load_retry_count: int = 0
    repository_poll_secs: float = 15.0


@dataclass(eq=False)
class ModelRecord:
    """A model of the repository: its versions, or why it has none."""

    name: str
    path: Path | None
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    state: ModelState = ModelState.LOADING
    reason: str = ""
    fingerprint: str = ""
    # Fingerprint without the config files: tells a config-only edit apart.
    files_fingerprint: str = ""
    # The override directory of the last load through the API (removed on replacement).
    override_dir: Path | None = None

    def ready_versions(self) -> list[ModelVersion]:
        return [v for _, v in sorted(self.versions.items()) if v.state is ModelState.READY]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    version: str
    state: str
    reason: str


def parse_version(version: str) -> int | None:
    """``""`` means latest; otherwise a positive integer, with Triton's error text."""
    if version == "":
        return None
    try:
        number = int(version)
    except ValueError:
        raise InvalidArgumentError(
            f"failed to get model version from specified version string '{version}' "
            "(details: stol), version should be an integral value > 0"
        ) from None
    if number < 0:
        raise InvalidArgumentError(
            f"invalid model version specified '{version}' , version should be an integral value > 0"
        )
    return number


def _config_entries(config_file: Path) -> frozenset[str]:
    return frozenset({config_file.name, "configs"})


def _without_counts(config: mc.ModelConfig) -> mc.ModelConfig:
    copy = mc.ModelConfig()
    copy.CopyFrom(config)
    for group in copy.instance_group:
        group.count = 0
        group.name = ""  # generated names differ between a default and a written group
    return copy


class ModelManager:
    def __init__(
        self,
        repositories: list[Path],
        loader: ModelLoader,
        settings: ManagerSettings | None = None,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        self._repositories = repositories
        # Blocking, run at the start of each poll: brings remote roots' local copies up to date.
        self._refresh = refresh
        self._loader = loader
        # Ensembles find their step models through this manager at request time.
        loader.step_resolver = self.get
        self.settings = settings or ManagerSettings()
        self._records: dict[str, ModelRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, self.settings.load_thread_count), thread_name_prefix="naiad-load"
        )
        # Bounds whole loads, warmup included, as Triton's load threads do.
        self._load_slots = asyncio.Semaphore(max(1, self.settings.load_thread_count))
        self._background: set[asyncio.Task[None]] = set()
        self._poll_task: asyncio.Task[None] | None = None
        self._temp_root = Path(tempfile.mkdtemp(prefix="naiad-models-"))

    # -- start-up, polling, shutdown -----------------------------------------------

    async def start(self) -> list[str]:
        """Load the start-up models for the control mode; return failures, one line each."""
        locations, invalid = scan_repositories(self._repositories)
        for name, why in invalid.items():
            self._records[name] = ModelRecord(name, None, state=ModelState.UNAVAILABLE, reason=why)
        failures = [f"'{name}': {why}" for name, why in invalid.items()]
        wanted = locations
        if self.settings.control_mode is ModelControlMode.EXPLICIT:
            names = set(self.settings.startup_models)
            if "*" not in names:
                found = {location.name for location in locations}
                failures += [
                    f"'{n}': failed to load '{n}', failed to poll from model repository"
                    for n in sorted(names - found)
                ]
                wanted = [location for location in locations if location.name in names]
        # Ensembles load after the models their steps need, one by one (they are cheap,
        # and an ensemble of ensembles loads its inner ensembles first).
        kinds = [await self._in_thread(self._loader.step_models, x.path, None) for x in wanted]
        models = [x for x, steps in zip(wanted, kinds, strict=True) if steps is None]
        ensembles = [x for x, steps in zip(wanted, kinds, strict=True) if steps is not None]
        results: list[object] = await asyncio.gather(
            *(self._load(location.name, location.path) for location in models),
            return_exceptions=True,
        )
        for location in ensembles:
            record = self._records.get(location.name)
            if record is not None and record.ready_versions():
                results.append(None)  # loaded already, as a step of an earlier ensemble
                continue
            try:
                await self._load(location.name, location.path)
                results.append(None)
            except NaiadError as exc:
                results.append(exc)
        for location, result in zip(models + ensembles, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(f"'{location.name}': {result}")
        if self.settings.control_mode is ModelControlMode.POLL:
            self._poll_task = asyncio.get_running_loop().create_task(self._poll_forever())
        return failures

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.repository_poll_secs)
            try:
                await self.poll_once()
            except Exception:  # one bad poll must not end polling
                logger.exception("error while polling the model repositories")

    async def poll_once(self) -> None:
        """Load new or changed models and unload removed ones (poll mode)."""
        if self._refresh is not None:
            # A failed refresh ends this poll before the scan: nothing loads from a half-synced copy.
            await self._in_thread(self._refresh)
        locations, _ = await self._in_thread(scan_repositories, self._repositories)
        present = {location.name for location in locations}
        for location in locations:
            record = self._records.get(location.name)
            fingerprint = await self._in_thread(directory_fingerprint, location.path)
            if record is not None and record.fingerprint == fingerprint:
                continue
            try:
                await self._load(location.name, location.path)
            except NaiadError as exc:
                logger.error("poll: model '%s' did not (re)load: %s", location.name, exc)
        for name, record in list(self._records.items()):
            if name not in present and record.path is not None and record.versions:
                logger.info("poll: model '%s' was removed from the repository", name)
                await self.unload(name)

    async def stop(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
        for task in list(self._background):
            await asyncio.gather(task, return_exceptions=True)
        for record in self._records.values():
            versions = list(record.versions.values())
            record.versions = {}
            for model in versions:
                await model.unload()
        self._pool.shutdown(wait=True)
        shutil.rmtree(self._temp_root, ignore_errors=True)

    # -- explicit load / unload ------------------------------------------------------

    async def load(
        self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        """The repository API's load: (re)load ``name``, blocking until it is ready or failed."""
        if not is_valid_model_name(name):
            raise InvalidArgumentError(f"invalid model name '{name[:64]}'")
        try:
            await self._load_requested(name, config_json, files)
        except NaiadError as exc:
            message = self._redact(exc.message)
            if not message.startswith("failed to load"):
                message = f"failed to load '{name}': {message}"
            raise InvalidArgumentError(message) from None

    def _redact(self, message: str) -> str:
        """Errors sent over the network name files relative to their repository only."""
        for root in sorted([self._temp_root, *self._repositories], key=lambda p: -len(str(p))):
            resolved = str(Path(root).resolve())
            for prefix in {str(root), resolved}:
                message = re.sub(re.escape(prefix) + r"(/override-[^/]+)?/?", "", message)
        return message

    async def _load_requested(
        self, name: str, config_json: str | None, files: dict[str, bytes] | None
    ) -> None:
        if files and config_json is None:
            raise InvalidArgumentError(
                f"failed to load '{name}', the model configuration must be provided "
                "with file overrides"
            )
        override: mc.ModelConfig | None = None
        override_dir: Path | None = None
        if files:
            assert config_json is not None
            model_dir = await self._in_thread(
                materialize_override, name, config_json, files, self._temp_root
            )
            override_dir = model_dir.parent
        else:
            location = await self._locate(name)
            if location is None:
                raise InvalidArgumentError(
                    f"failed to load '{name}', failed to poll from model repository"
                )
            model_dir = location.path
            if config_json is not None:
                override = parse_config_json(config_json, "the 'config' parameter")
        try:
            await self._load(name, model_dir, override, override_dir)
        except NaiadError:
            if override_dir is not None:
                shutil.rmtree(override_dir, ignore_errors=True)
            raise

    async def unload(self, name: str) -> None:
        """Drain and unload every version of ``name``."""
        async with self._lock(name):
            record = self._records.get(name)
            if record is None:
                return
            versions = list(record.versions.values())
            record.versions = {}
            record.state = ModelState.UNAVAILABLE
            record.reason = "unloaded"
            record.fingerprint = ""
            await asyncio.gather(*(model.unload() for model in versions))
            if record.override_dir is not None:
                shutil.rmtree(record.override_dir, ignore_errors=True)
                record.override_dir = None
            logger.info("successfully unloaded '%s'", name)

    # -- loading -------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _in_thread(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    async def _locate(self, name: str) -> ModelLocation | None:
        locations, _ = await self._in_thread(scan_repositories, self._repositories)
        return next((location for location in locations if location.name == name), None)

    async def _load(
        self,
        name: str,
        model_dir: Path,
        override: mc.ModelConfig | None = None,
        override_dir: Path | None = None,
        chain: frozenset[str] = frozenset(),
    ) -> None:
        # Outside this model's lock and load slot: the steps' loads need both.
        missing_step = await self._load_steps(name, model_dir, override, chain | {name})
        async with self._lock(name), self._load_slots:
            logger.info("loading '%s'", name)
            record = self._records.get(name)
            if record is None:
                record = self._records[name] = ModelRecord(name, model_dir)
            serving = bool(record.ready_versions())
            if not serving:
                record.state = ModelState.LOADING
            fingerprint = await self._in_thread(directory_fingerprint, model_dir)
            if serving and override is None and await self._scale_in_place(record, model_dir):
                record.fingerprint = fingerprint
                return
            try:
                if missing_step is not None:
                    raise missing_step
                versions = await self._load_versions(name, model_dir, override)
            except NaiadError as exc:
                reason = failure_reason(exc)
                logger.error("failed to load '%s': %s", name, reason)
                record.reason = reason
                record.fingerprint = fingerprint  # do not retry the same files every poll
                if not serving:
                    record.state = ModelState.UNAVAILABLE
                raise
            ready = [v for v in versions if v.state is ModelState.READY]
            reasons = "; ".join(
                f"version {v.version}: {v.reason}"
                for v in versions
                if v.state is not ModelState.READY
            )
            if not ready and serving:
                for model in versions:
                    await model.unload()
                record.reason = reasons
                record.fingerprint = fingerprint
                raise InternalError(reasons or "no version could be loaded")
            old = list(record.versions.values())
            # The switch: one assignment, so every request sees either old or new.
            record.versions = {v.version: v for v in versions}
            record.path = model_dir
            record.fingerprint = fingerprint
            record.files_fingerprint = await self._in_thread(
                directory_fingerprint,
                model_dir,
                _config_entries(config_path(model_dir, self._loader.settings.config_name)),
            )
            record.state = ModelState.READY if ready else ModelState.UNAVAILABLE
            record.reason = "" if ready else reasons
            previous_override, record.override_dir = record.override_dir, override_dir
            self._retire(old, previous_override)
            if not ready:
                raise InternalError(reasons)

    async def _load_steps(
        self, name: str, model_dir: Path, override: mc.ModelConfig | None, chain: frozenset[str]
    ) -> NaiadError | None:
        """Before an ensemble loads, make sure its step models are loaded.

        A step being loaded is waited for; one never loaded (or, in explicit mode, not
        loaded now) is loaded first. Returns Triton's error for a step still without a
        ready version, which fails the ensemble's load.
        """
        steps = await self._in_thread(self._loader.step_models, model_dir, override)
        for step in steps or []:
            lock = self._lock(step)
            if lock.locked():
                async with lock:  # a load of the step is under way: let it finish
                    pass
            record = self._records.get(step)
            if record is not None and record.ready_versions():
                continue
            explicit = self.settings.control_mode is ModelControlMode.EXPLICIT
            if step in chain or (record is not None and not explicit):
                continue
            location = await self._locate(step)
            if location is None:
                return InvalidArgumentError(
                    f"ensemble '{name}' depends on '{step}' which is not found in the model "
                    "repository"
                )
            # A failure is in the step's own record; the check below fails the ensemble.
            with contextlib.suppress(NaiadError):
                await self._load(step, location.path, chain=chain)
        for step in steps or []:
            record = self._records.get(step)
            if record is None or not record.ready_versions():
                return InvalidArgumentError(
                    f"ensemble '{name}' depends on '{step}' which has no loaded version(s)"
                )
        return None

    def dependents(self, name: str) -> list[str]:
        """Loaded ensembles with a step that runs ``name`` (for ``unload_dependents``)."""
        found = []
        for record in self._records.values():
            for model in record.ready_versions():
                steps = model.config.ensemble_scheduling.step
                if model.config.platform == "ensemble" and any(s.model_name == name for s in steps):
                    found.append(record.name)
                    break
        return sorted(found)

    async def _load_versions(
        self, name: str, model_dir: Path, override: mc.ModelConfig | None
    ) -> list[ModelVersion]:
        attempts = 1 + max(0, self.settings.load_retry_count)
        for attempt in range(attempts):
            try:
                versions = await self._in_thread(self._loader.load, name, model_dir, override)
            except NaiadError:
                if attempt == attempts - 1:
                    raise
                logger.warning(
                    "loading '%s' failed; retrying (%d of %d)", name, attempt + 1, attempts - 1
                )
                continue
            for model in versions:
                if model.state is ModelState.LOADING:
                    await self._warm_up(model)
            if any(v.state is ModelState.READY for v in versions) or attempt == attempts - 1:
                return versions
            for model in versions:
                await model.unload()
        raise InternalError(f"failed to load '{name}'")  # unreachable: the loop returns

    async def _warm_up(self, model: ModelVersion) -> None:
        assert model.scheduler is not None
        try:
            instances = model.scheduler.instances + model.passive_instances
            await run_warmup(model.config, instances, model.model_dir)
        except NaiadError as exc:
            model.reason = failure_reason(exc)
            logger.error(
                "failed to load '%s' version %d: %s", model.name, model.version, model.reason
            )
            await model.unload()
            model.state = ModelState.UNAVAILABLE
            model.reason = failure_reason(exc)
            return
        model.stats.mark_loaded()  # nv_model_load_duration_secs: load and warmup
        model.state = ModelState.READY
        logger.info("successfully loaded '%s' version %d", model.name, model.version)

    def _retire(self, versions: list[ModelVersion], override_dir: Path | None) -> None:
        """Unload replaced versions once their in-flight requests finish."""

        async def retire() -> None:
            await asyncio.gather(*(model.unload() for model in versions))
            if override_dir is not None:
                shutil.rmtree(override_dir, ignore_errors=True)

        if not versions and override_dir is None:
            return
        task = asyncio.get_running_loop().create_task(retire())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _scale_in_place(self, record: ModelRecord, model_dir: Path) -> bool:
        """Apply a config change that only alters instance counts; False if it is more."""
        current = record.ready_versions()
        if not current or record.path != model_dir:
            return False
        old_config = current[0].config
        config_file = config_path(model_dir, self._loader.settings.config_name)
        try:
            new_config = await self._in_thread(self._loader.load_config, record.name, model_dir)
        except NaiadError:
            return False
        if new_config == old_config or _without_counts(new_config) != _without_counts(old_config):
            return False
        files_now = await self._in_thread(
            directory_fingerprint, model_dir, _config_entries(config_file)
        )
        if files_now != record.files_fingerprint:
            return False
        backend = self._loader.backend_for(new_config)
        for model in current:
            scheduler = model.scheduler
            if scheduler is None:
                return False
            context = ModelContext(model.name, model.version, new_config, model_dir)
            for old_group, new_group in zip(
                old_config.instance_group, new_config.instance_group, strict=True
            ):
                if new_group.passive:
                    continue
                delta = new_group.count - old_group.count
                if delta > 0:
                    indices = range(old_group.count, new_group.count)
                    slots = await self._in_thread(
                        self._loader.create_slots, backend, context, new_group, indices
                    )
                    scheduler.add_slots(slots)
                elif delta < 0:
                    removed = await scheduler.remove_slots(-delta)
                    for slot in removed:
                        await self._in_thread(slot.instance.close)
            model.config = new_config
        logger.info("scaled '%s' in place to the new instance counts", record.name)
        return True

    # -- lookups -------------------------------------------------------------------

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version that serves a request, or Triton's error for why there is none."""
        number = parse_version(version)  # Triton checks the version string first
        record = self._records.get(name)
        if record is None:
            raise NotFoundError(f"Request for unknown model: '{name}' is not found")
        if number is None:
            ready = record.ready_versions()
            if not ready:
                raise NotFoundError(
                    f"Request for unknown model: '{name}' has no available versions"
                )
            return ready[-1]
        model = record.versions.get(number)
        if model is None:
            raise NotFoundError(
                f"Request for unknown model: '{name}' version {number} is not found"
            )
        if model.state is not ModelState.READY:
            raise UnavailableError(
                f"Request for unknown model: '{name}' version {number} is not at ready state"
            )
        return model

    def is_ready(self, name: str, version: str = "") -> bool:
        try:
            return self.get(name, version).is_ready()
        except NaiadError:
            return False

    def all_ready(self) -> bool:
        """Strict readiness: every loaded model, and every version it selected, is READY.

        Models unloaded on purpose (and, in explicit mode, never loaded) do not count.
        """
        for record in self._records.values():
            if record.reason == "unloaded" and not record.versions:
                continue
            if record.state is not ModelState.READY:
                return False
            if any(v.state is not ModelState.READY for v in record.versions.values()):
                return False
        return True

    async def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every model of the repositories, with the state of each loaded version."""
        locations, _ = await self._in_thread(scan_repositories, self._repositories)
        names = {location.name for location in locations} | set(self._records)
        entries: list[IndexEntry] = []
        for name in sorted(names):
            record = self._records.get(name)
            if record is None:
                if not ready_only:
                    entries.append(IndexEntry(name, "", "", ""))
                continue
            if not record.versions:
                if not ready_only:
                    entries.append(IndexEntry(name, "", record.state.value, record.reason))
                continue
            for number, model in sorted(record.versions.items()):
                if ready_only and model.state is not ModelState.READY:
                    continue
                reason = model.reason or (record.reason if model.state is ModelState.READY else "")
                entries.append(IndexEntry(name, str(number), model.state.value, reason))
        return entries

    def all_ready_versions(self) -> list[ModelVersion]:
        return [v for name in sorted(self._records) for v in self._records[name].ready_versions()]

    def ready_versions(self, name: str) -> list[ModelVersion]:
        record = self._records.get(name)
        return record.ready_versions() if record else []
