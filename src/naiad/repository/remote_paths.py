"""Remote repository addresses and the local paths they map to; no network here.

Parses ``--model-repository`` values the way ``tritonserver`` does: ``s3://bucket/path``
for AWS S3, and ``s3://host:port/bucket/path`` or ``s3://http[s]://host[:port]/bucket/path``
for S3-compatible stores. Other remote schemes (``gs://``, ``as://``) are refused with a
clear error. Also: where the local copies live, and the check that turns an object key
into a path that cannot leave its copy (an untrusted bucket must not write outside it).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from naiad.errors import InvalidArgumentError, UnsupportedError

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_HOST_PORT_RE = re.compile(r"^([0-9A-Za-z.\-]+)(?::([0-9]{1,5}))?$")
# Permissive on purpose: S3-compatible stores (and legacy AWS buckets) accept more than
# today's AWS rules; this only keeps separators and odd characters out.
_BUCKET_RE = re.compile(r"^[A-Za-z0-9._\-]{1,255}$")
_UNSUPPORTED = {
    "gs": "Google Cloud Storage (gs://)",
    "as": "Azure Storage (as://)",
}
MAX_KEY_PART_CHARS = 255


class UnsafeObjectKeyError(InvalidArgumentError):
    """An object key that would not map to a path inside the local copy."""


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where a remote repository lives: endpoint (None: AWS), bucket and key prefix."""

    bucket: str
    prefix: str  # no leading or trailing '/'; "" for the whole bucket
    endpoint_url: str | None = None

    @property
    def url(self) -> str:
        """The canonical address, for logs and for the cache key."""
        endpoint = f"{self.endpoint_url}/" if self.endpoint_url else ""
        path = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"s3://{endpoint}{path}"

    @property
    def list_prefix(self) -> str:
        # The trailing '/' keeps s3://b/models from also matching s3://b/models2/...
        return f"{self.prefix}/" if self.prefix else ""


def is_remote(root: str | Path) -> bool:
    """True for any ``scheme://`` address (a local path never has one)."""
    return isinstance(root, str) and bool(_SCHEME_RE.match(root))


def parse_remote(root: str) -> S3Location:
    """Parse a remote repository address; refuse schemes Naiad does not support."""
    match = _SCHEME_RE.match(root)
    if match is None:
        raise InvalidArgumentError(f"'{root}' is not a remote repository address")
    scheme = match.group(1).lower()
    if scheme in _UNSUPPORTED:
        raise UnsupportedError(
            f"model repository '{root}': {_UNSUPPORTED[scheme]} is not supported by Naiad; "
            "use a local directory or an s3:// repository"
        )
    if scheme != "s3":
        raise UnsupportedError(
            f"model repository '{root}': unsupported scheme '{scheme}://' "
            "(supported: local directories and s3://)"
        )
    rest = root[match.end() :]
    endpoint: str | None = None
    protocol = ""
    for candidate in ("http://", "https://"):
        if rest.lower().startswith(candidate):
            protocol, rest = candidate[:-3], rest[len(candidate) :]
    # Triton cleans repeated slashes the same way.
    parts = [part for part in rest.split("/") if part]
    if protocol or (parts and ":" in parts[0]):
        host_port = parts.pop(0) if parts else ""
        host = _HOST_PORT_RE.match(host_port)
        # Without an explicit protocol a port is what marks the endpoint form (as Triton).
        if host is None or (not protocol and host.group(2) is None):
            raise InvalidArgumentError(
                f"model repository '{root}': expected s3://[http[s]://]host:port/bucket/path"
            )
        endpoint = f"{protocol or 'http'}://{host_port}"
    if not parts or not _BUCKET_RE.match(parts[0]):
        raise InvalidArgumentError(f"model repository '{root}': no valid bucket name")
    bucket, prefix_parts = parts[0], parts[1:]
    for part in prefix_parts:
        if part in (".", ".."):
            raise InvalidArgumentError(f"model repository '{root}': '{part}' in the path")
    return S3Location(bucket, "/".join(prefix_parts), endpoint)


def default_cache_root() -> Path:
    """``$TRITON_AWS_MOUNT_DIRECTORY``, else ``$XDG_CACHE_HOME/naiad/remote``, else
    ``~/.cache/naiad/remote``."""
    mount = os.environ.get("TRITON_AWS_MOUNT_DIRECTORY")
    if mount:
        return Path(mount)
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "naiad" / "remote"


def cache_dir_for(location: S3Location, cache_root: Path) -> Path:
    """One directory per remote repository, stable across restarts.

    The hash keeps different endpoints and prefixes of one bucket apart; the bucket
    name in front is only there for people looking at the cache.
    """
    digest = hashlib.sha256(location.url.encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._\-]", "_", location.bucket)[:64]
    return cache_root / f"{readable}-{digest}"


def object_path(relative_key: str) -> PurePosixPath:
    """The relative path an object key (less the repository prefix) is stored at.

    Refused: empty keys, absolute keys, ``.``/``..``/empty parts, backslashes, control
    characters and over-long parts. What passes can only name a path below the copy;
    the writer still checks the resolved path (a symlink put there by someone else).
    """
    shown = relative_key[:64].encode("unicode_escape").decode()
    if not relative_key or relative_key.startswith("/"):
        raise UnsafeObjectKeyError(f"object key '{shown}' is empty or absolute")
    if "\\" in relative_key or any(ord(c) < 32 or ord(c) == 127 for c in relative_key):
        raise UnsafeObjectKeyError(f"object key '{shown}' has a backslash or control character")
    parts = relative_key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeObjectKeyError(f"object key '{shown}' has an empty, '.' or '..' part")
        if len(part) > MAX_KEY_PART_CHARS:
            raise UnsafeObjectKeyError(
                f"object key '{shown}' has a part longer than {MAX_KEY_PART_CHARS} characters"
            )
    return PurePosixPath(*parts)


def inside(root: Path, relative: PurePosixPath) -> Path:
    """``root / relative``, refused if, resolved, it is not below ``root``."""
    target = root.joinpath(*relative.parts)
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeObjectKeyError(f"object '{relative}' resolves outside the local copy")
    return target
