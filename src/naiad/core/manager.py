"""The model manager: which models exist, their versions and states, and lookups by name.

Lookups follow Triton: no version (or ``""``) means the highest READY version; the
error texts are Triton's ``Request for unknown model: ...`` family.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass, field
from pathlib import Path

from naiad.core.loader import ModelLoader
from naiad.core.model import ModelState, ModelVersion, failure_reason
from naiad.errors import InvalidArgumentError, NaiadError, NotFoundError, UnavailableError
from naiad.repository.scanner import scan_repositories

logger = logging.getLogger("naiad.manager")


@dataclass(eq=False)
class ModelRecord:
    """A model of the repository: its versions, or why it has none."""

    name: str
    path: Path | None
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    state: ModelState = ModelState.LOADING
    reason: str = ""

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


class ModelManager:
    def __init__(self, repositories: list[Path], loader: ModelLoader, load_thread_count: int = 4):
        self._repositories = repositories
        self._loader = loader
        self._load_thread_count = max(1, load_thread_count)
        self._records: dict[str, ModelRecord] = {}

    async def load_all(self) -> list[str]:
        """Load every model of every repository; return the failures, one line each."""
        locations, invalid = scan_repositories(self._repositories)
        for name, why in invalid.items():
            self._records[name] = ModelRecord(name, None, state=ModelState.UNAVAILABLE, reason=why)
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=self._load_thread_count, thread_name_prefix="naiad-load"
        ) as pool:
            records = [ModelRecord(loc.name, loc.path) for loc in locations]
            for record in records:
                self._records[record.name] = record
            await asyncio.gather(*(self._load(loop, pool, record) for record in records))
        failures = [f"'{name}': {why}" for name, why in invalid.items()]
        for record in self._records.values():
            if record.state is not ModelState.READY:
                failures.append(f"'{record.name}': {record.reason}")
            else:
                failures.extend(
                    f"'{record.name}' version {v.version}: {v.reason}"
                    for v in record.versions.values()
                    if v.state is not ModelState.READY
                )
        return failures

    async def _load(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: concurrent.futures.Executor,
        record: ModelRecord,
    ) -> None:
        assert record.path is not None
        try:
            versions = await loop.run_in_executor(pool, self._loader.load, record.name, record.path)
        except NaiadError as exc:
            record.state = ModelState.UNAVAILABLE
            record.reason = failure_reason(exc)
            logger.error("failed to load '%s': %s", record.name, record.reason)
            return
        except Exception as exc:  # a bug while loading one model must not stop the others
            record.state = ModelState.UNAVAILABLE
            record.reason = f"Internal: {type(exc).__name__}: {exc}"
            logger.exception("failed to load '%s'", record.name)
            return
        record.versions = {v.version: v for v in versions}
        record.state = ModelState.READY if record.ready_versions() else ModelState.UNAVAILABLE
        if record.state is ModelState.UNAVAILABLE:
            record.reason = "; ".join(v.reason for v in versions)

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
        """Strict readiness: every model, and every version it selected, is READY."""
        return all(
            record.state is ModelState.READY
            and all(v.state is ModelState.READY for v in record.versions.values())
            for record in self._records.values()
        )

    def index(self) -> list[IndexEntry]:
        entries: list[IndexEntry] = []
        for name in sorted(self._records):
            record = self._records[name]
            if not record.versions:
                entries.append(IndexEntry(name, "", record.state.value, record.reason))
            for number, model in sorted(record.versions.items()):
                entries.append(IndexEntry(name, str(number), model.state.value, model.reason))
        return entries

    def all_ready_versions(self) -> list[ModelVersion]:
        return [v for name in sorted(self._records) for v in self._records[name].ready_versions()]

    def ready_versions(self, name: str) -> list[ModelVersion]:
        record = self._records.get(name)
        return record.ready_versions() if record else []

    def unload_all(self) -> None:
        for record in self._records.values():
            for model in record.versions.values():
                model.state = ModelState.UNLOADING
                model.close()
                model.state = ModelState.UNAVAILABLE
                model.reason = "unloaded"
