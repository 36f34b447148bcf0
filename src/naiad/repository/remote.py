"""Remote (``s3://``) model repositories, served from a local copy that survives restarts.

:meth:`RemoteRepository.sync` lists the objects under the repository's prefix,
downloads only those whose ETag or size differs from the manifest of the last sync,
deletes local files whose objects are gone, and returns the local directory, which the
manager scans like any other repository root. The manifest (``manifest.json``, written
atomically) lives beside the copy, so a restart downloads nothing that did not change
(Triton copies the whole repository again at every start).

Credentials and region come from boto3's standard chain: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``, profiles, instance
roles. boto3 is imported only when an ``s3://`` repository is used (extra ``naiad[s3]``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from naiad.errors import UnavailableError
from naiad.repository.remote_paths import (
    S3Location,
    UnsafeObjectKeyError,
    cache_dir_for,
    default_cache_root,
    inside,
    is_remote,
    object_path,
    parse_remote,
)

logger = logging.getLogger("naiad.remote")

MANIFEST_FORMAT = 1
_CHUNK_BYTES = 1 << 20
_PROGRESS_EVERY_S = 2.0
_MANIFEST_EVERY_S = 1.0
_DOWNLOAD_THREADS = 4


class RemoteRepositoryError(UnavailableError):
    """A remote repository could not be listed or copied; the message says which and why."""


@dataclass(frozen=True, slots=True)
class RemoteObject:
    key: str  # full key in the bucket
    path: PurePosixPath  # where it goes, relative to the local copy
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class CachedObject:
    """A manifest entry: the identity of the object a local file was copied from."""

    etag: str
    size: int
    version_id: str = ""


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # unreachable


def _etag(value: object) -> str:
    # Some S3-compatible stores quote ETags in one response and not in another.
    return str(value or "").strip('"')


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class _Progress:
    """Download progress, logged at most every couple of seconds (threads share it)."""

    def __init__(self, url: str, objects: int, total_bytes: int) -> None:
        self.url = url
        self.objects = objects
        self.total = total_bytes
        self.done_bytes = 0
        self.done_objects = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._lock = threading.Lock()

    def advance(self, nbytes: int, finished_object: bool = False) -> None:
        with self._lock:
            self.done_bytes += nbytes
            self.done_objects += int(finished_object)
            now = time.monotonic()
            if now - self._last_log < _PROGRESS_EVERY_S:
                return
            self._last_log = now
            percent = 100 * self.done_bytes / self.total if self.total else 100
            rate = self.done_bytes / max(now - self.started, 1e-6)
            logger.info(
                "remote repository %s: %s of %s (%.0f%%), %d of %d objects, %s/s",
                self.url,
                _human(self.done_bytes),
                _human(self.total),
                percent,
                self.done_objects,
                self.objects,
                _human(rate),
            )


class RemoteRepository:
    """One ``s3://`` repository and its local copy under ``cache_root``."""

    def __init__(self, root: str, cache_root: Path | None = None) -> None:
        self.location: S3Location = parse_remote(root)
        self.root = root
        self.cache_dir = cache_dir_for(self.location, cache_root or default_cache_root())
        self.local_dir = self.cache_dir / "repository"
        self.manifest_path = self.cache_dir / "manifest.json"
        self._client: Any = None
        # Keys already reported as skipped: poll mode would repeat them every scan.
        self._skipped: set[str] = set()

    @property
    def url(self) -> str:
        return self.location.url

    # -- the sync --------------------------------------------------------------------

    def sync(self) -> Path:
        """Bring the local copy up to date with the bucket; return its directory."""
        started = time.monotonic()
        self.local_dir.mkdir(parents=True, exist_ok=True)
        with self._exclusive():
            listing = self._list()
            cached = self._read_manifest()
            state: dict[str, CachedObject] = {}
            wanted: list[RemoteObject] = []
            for obj in listing.values():
                entry = cached.get(str(obj.path))
                if entry is not None and self._is_current(obj, entry):
                    state[str(obj.path)] = entry
                else:
                    wanted.append(obj)
            removed = self._prune({str(obj.path) for obj in listing.values()})
            kept = len(state)
            total = sum(obj.size for obj in wanted)
            if wanted:
                logger.info(
                    "remote repository %s: downloading %s (%s); %s up to date in the cache",
                    self.url,
                    _count(len(wanted), "object"),
                    _human(total),
                    _count(kept, "object"),
                )
            try:
                self._download_all(wanted, state, total)
            finally:
                # What finished is kept even when a download failed: the next sync
                # resumes instead of starting over.
                self._write_manifest(state)
        logger.info(
            "remote repository %s: downloaded %s (%s), %s up to date, removed %s, in %.1f s; "
            "local copy at %s",
            self.url,
            _count(len(wanted), "object"),
            _human(total),
            _count(kept, "object"),
            _count(removed, "file"),
            time.monotonic() - started,
            self.local_dir,
        )
        return self.local_dir

    def _is_current(self, obj: RemoteObject, entry: CachedObject) -> bool:
        if entry.etag != obj.etag or entry.size != obj.size:
            return False
        local = self.local_dir.joinpath(*obj.path.parts)
        # A file edited or truncated by hand is copied again.
        try:
            return not local.is_symlink() and local.is_file() and local.stat().st_size == obj.size
        except OSError:
            return False

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One sync of a copy at a time, also across processes sharing the cache."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
            yield
            return
        with open(self.cache_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- S3 --------------------------------------------------------------------------

    def _s3(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise RemoteRepositoryError(
                    f"model repository {self.url}: s3:// repositories need boto3 "
                    "(pip install 'naiad[s3]')"
                ) from None
            config = Config(
                retries={"max_attempts": 5, "mode": "standard"},
                # An unreachable endpoint fails start-up in about a minute, not five.
                connect_timeout=10,
                max_pool_connections=_DOWNLOAD_THREADS * 2,
                # S3-compatible stores (MinIO and the like) want path-style addressing.
                s3={"addressing_style": "path"} if self.location.endpoint_url else {},
            )
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.location.endpoint_url, config=config
            )
        return self._client

    def _failure(self, action: str, exc: Exception) -> RemoteRepositoryError:
        return RemoteRepositoryError(f"failed to {action} model repository {self.url}: {exc}")

    def _list(self) -> dict[str, RemoteObject]:
        """Every object under the prefix whose key makes a safe local path."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = self.location.list_prefix
        objects: dict[str, RemoteObject] = {}
        try:
            pages = (
                self._s3()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.location.bucket, Prefix=prefix)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    obj = self._remote_object(item, prefix)
                    if obj is not None:
                        objects[str(obj.path)] = obj
        except (BotoCoreError, ClientError) as exc:
            raise self._failure("list", exc) from None
        if not objects:
            # Also refuses to wipe a working copy because a listing came back empty.
            raise RemoteRepositoryError(
                f"failed to stat file {self.url}: model repository not found "
                "(no objects under that prefix)"
            )
        return _without_file_dir_clashes(objects, self.url)

    def _remote_object(self, item: dict[str, Any], prefix: str) -> RemoteObject | None:
        key: str = item["Key"]
        relative = key[len(prefix) :]
        if relative == "" or relative.endswith("/"):
            return None  # a "folder" marker made by consoles and tools, not a file
        try:
            path = object_path(relative)
        except UnsafeObjectKeyError as exc:
            if key not in self._skipped:
                self._skipped.add(key)
                logger.warning("remote repository %s: skipping object: %s", self.url, exc)
            return None
        # Stores without ETags still change LastModified on every write.
        etag = _etag(item.get("ETag")) or f"modified:{item.get('LastModified')}"
        return RemoteObject(key, path, etag, int(item.get("Size", 0)))

    def _download_all(
        self, wanted: list[RemoteObject], state: dict[str, CachedObject], total: int
    ) -> None:
        if not wanted:
            return
        import concurrent.futures

        progress = _Progress(self.url, len(wanted), total)
        temp_dir = self.cache_dir / "partial"
        temp_dir.mkdir(exist_ok=True)
        lock = threading.Lock()
        last_write = [time.monotonic()]

        def fetch(obj: RemoteObject) -> None:
            entry = self._download(obj, temp_dir, progress)
            with lock:
                state[str(obj.path)] = entry
                if time.monotonic() - last_write[0] >= _MANIFEST_EVERY_S:
                    self._write_manifest(state)
                    last_write[0] = time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(
            _DOWNLOAD_THREADS, thread_name_prefix="naiad-s3"
        ) as pool:
            futures = [pool.submit(fetch, obj) for obj in wanted]
            try:
                for future in concurrent.futures.as_completed(futures):
                    future.result()
            except BaseException:
                # Leaving the pool waits for the downloads under way, so the manifest
                # written next in `sync` never races a worker's write.
                pool.shutdown(cancel_futures=True)
                raise
        shutil.rmtree(temp_dir, ignore_errors=True)

    def _download(self, obj: RemoteObject, temp_dir: Path, progress: _Progress) -> CachedObject:
        from botocore.exceptions import BotoCoreError, ClientError

        target = inside(self.local_dir, obj.path)  # refused before anything is downloaded
        handle, temp_name = tempfile.mkstemp(dir=temp_dir, suffix=".part")
        written = 0
        response: dict[str, Any] = {}
        try:
            with os.fdopen(handle, "wb") as out:
                try:
                    response = self._s3().get_object(Bucket=self.location.bucket, Key=obj.key)
                    for chunk in response["Body"].iter_chunks(_CHUNK_BYTES):
                        out.write(chunk)
                        written += len(chunk)
                        progress.advance(len(chunk))
                except (BotoCoreError, ClientError) as exc:
                    raise self._failure(f"download {obj.key} of", exc) from None
            expected = int(response.get("ContentLength", written))
            if written != expected:
                raise RemoteRepositoryError(
                    f"failed to download {obj.key} of model repository {self.url}: "
                    f"got {written} of {expected} bytes"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            target = inside(self.local_dir, obj.path)  # again, now that parents exist
            # Atomic: a scan never sees a half-written model file.
            os.replace(temp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        progress.advance(0, finished_object=True)
        logger.debug("remote repository %s: downloaded %s (%s)", self.url, obj.key, _human(written))
        # The identity of what was actually read, which may be newer than the listing.
        return CachedObject(
            etag=_etag(response.get("ETag")) or obj.etag,
            size=written,
            version_id=str(response.get("VersionId") or ""),
        )

    # -- the local copy ----------------------------------------------------------------

    def _prune(self, keep: set[str]) -> int:
        """Delete local files (and then empty folders) that are not in ``keep``."""
        removed = 0
        for root, dirs, files in os.walk(self.local_dir, topdown=False):
            base = Path(root)
            relative_root = base.relative_to(self.local_dir)
            for name in files:
                relative = (relative_root / name).as_posix()
                # A link is never ours (downloads write plain files): it could point out.
                if relative not in keep or (base / name).is_symlink():
                    (base / name).unlink(missing_ok=True)
                    removed += 1
            for name in dirs:
                directory = base / name
                if directory.is_symlink():
                    # os.walk does not enter links; a link is never ours to keep.
                    directory.unlink()
                    removed += 1
                    continue
                with contextlib.suppress(OSError):  # not empty: still in use
                    directory.rmdir()
        return removed

    def _read_manifest(self) -> dict[str, CachedObject]:
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning(
                "remote repository %s: ignoring an unreadable cache manifest (%s); "
                "every object is downloaded again",
                self.url,
                exc,
            )
            return {}
        if (
            not isinstance(data, dict)
            or data.get("format") != MANIFEST_FORMAT
            or data.get("url") != self.url
        ):
            return {}
        entries: dict[str, CachedObject] = {}
        for path, entry in dict(data.get("objects", {})).items():
            try:
                entries[str(path)] = CachedObject(
                    str(entry["etag"]), int(entry["size"]), str(entry.get("version_id", ""))
                )
            except (KeyError, TypeError, ValueError):
                continue  # that one file is downloaded again
        return entries

    def _write_manifest(self, state: dict[str, CachedObject]) -> None:
        data = {
            "format": MANIFEST_FORMAT,
            "url": self.url,
            "objects": {
                path: {"etag": e.etag, "size": e.size, "version_id": e.version_id}
                for path, e in sorted(state.items())
            },
        }
        handle, temp_name = tempfile.mkstemp(dir=self.cache_dir, prefix=".manifest-")
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(data, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp_name, self.manifest_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise


def _without_file_dir_clashes(
    objects: dict[str, RemoteObject], url: str
) -> dict[str, RemoteObject]:
    """Drop an object whose key is also a folder of other keys (``a`` and ``a/b``)."""
    folders = {str(parent) for path in objects for parent in PurePosixPath(path).parents}
    for path in sorted(set(objects) & folders):
        logger.warning(
            "remote repository %s: skipping object '%s': it is also a folder of other objects",
            url,
            path,
        )
        del objects[path]
    return objects


class RepositoryRoots:
    """The ``--model-repository`` roots: local directories as they are, remote ones by
    the local directory of their copy (in the order given, which the scan keeps)."""

    def __init__(self, roots: Sequence[str | Path], cache_root: Path | None = None) -> None:
        self.remote: list[RemoteRepository] = []
        self.local_paths: list[Path] = []
        for root in roots:
            if is_remote(root):
                repository = RemoteRepository(str(root), cache_root)
                self.remote.append(repository)
                self.local_paths.append(repository.local_dir)
            else:
                self.local_paths.append(Path(root))

    def sync(self) -> None:
        """Sync every remote root (blocking: run it on a thread)."""
        for repository in self.remote:
            try:
                repository.sync()
            except OSError as exc:  # the cache directory itself: disk full, permissions
                raise RemoteRepositoryError(
                    f"failed to copy model repository {repository.url} to "
                    f"{repository.cache_dir}: {exc}"
                ) from None
