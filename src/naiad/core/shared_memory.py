"""Client shared memory (Triton's system shared memory extension), for both frontends.

A client registers a region: ``byte_size`` bytes at ``offset`` of a POSIX shared memory
segment ``/dev/shm/<key>`` that it created. Requests then name the region, an offset
and a byte size for inputs to read and outputs to write, instead of sending bytes.

Safety rules, each with its reason:

- Off unless ``--allow-client-shm``; keys must start with an operator-set prefix
  (``--shm-key-prefix``), compared after leading slashes are stripped, because a deny
  list was bypassed in Triton with extra slashes. No prefix configured: no key is allowed.
- The segment is opened with ``O_NOFOLLOW`` and must be a regular file, so a symlink in
  ``/dev/shm`` cannot point the server at another file.
- Data moves with ``pread``/``pwrite`` on the segment's descriptor, never ``mmap``: a
  client that truncates its segment after registering gets a short read (an error),
  where a mapping would kill the server with SIGBUS.
- Offsets and sizes are checked with unbounded Python integers against the unsigned
  64-bit range and the registered size before anything is read or allocated.
- A region used by an in-flight request is unregistered when the request finishes
  (each request holds a lease); until then it is listed, and new requests cannot use it.
- The server never unlinks a client's segment; it only closes its descriptor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from naiad.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NaiadError,
    NotFoundError,
    UnsupportedError,
)
from naiad.inference import ParameterValue, SharedMemoryTarget
from naiad.tensors import DataType, deserialize_bytes, element_count

logger = logging.getLogger("naiad.shared_memory")

SHM_DIRECTORY = "/dev/shm"
SIZE_MAX = 2**64 - 1  # Triton's size_t bound for offsets and sizes
DEFAULT_MAX_REGIONS = 1024  # each region holds one file descriptor
DEFAULT_MAX_TENSOR_BYTES = 2**31 - 1  # what one gRPC message may carry by default
_MAX_KEY_CHARS = 255  # NAME_MAX
DISABLED_MESSAGE = (
    "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."
)
_SHM_PARAMETERS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


@dataclass(frozen=True, slots=True)
class RegionStatus:
    name: str
    key: str
    offset: int
    byte_size: int


@dataclass(eq=False)
class _Region:
    name: str
    key: str
    offset: int
    byte_size: int
    fd: int
    users: int = 0
    unregistering: bool = False


@dataclass(frozen=True, slots=True)
class SharedMemoryReference:
    """The ``shared_memory_*`` parameters of one input or output."""

    region: str
    byte_size: int
    offset: int = 0


def _printable(text: str, limit: int = 128) -> str:
    """Client text safe to echo in one error line (no control characters, bounded)."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def pop_reference(
    parameters: dict[str, ParameterValue], kind: str, name: str
) -> SharedMemoryReference | None:
    """Take the shared memory parameters out of a tensor's parameters, checked."""
    if not any(key in parameters for key in _SHM_PARAMETERS):
        return None
    region = parameters.pop("shared_memory_region", None)
    byte_size = parameters.pop("shared_memory_byte_size", None)
    offset = parameters.pop("shared_memory_offset", 0)
    if not isinstance(region, str) or not region:
        raise InvalidArgumentError(
            f"'shared_memory_region' of {kind} '{name}' must be a non-empty string"
        )
    for field_name, value in (
        ("shared_memory_byte_size", byte_size),
        ("shared_memory_offset", offset),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= SIZE_MAX:
            raise InvalidArgumentError(
                f"'{field_name}' of {kind} '{name}' must be an integer in [0, {SIZE_MAX}]"
                + (" (it is required with 'shared_memory_region')" if value is None else "")
            )
    assert isinstance(byte_size, int) and isinstance(offset, int)
    return SharedMemoryReference(region, byte_size, offset)


def normalize_key(key: str) -> str:
    """The segment name of ``key`` (``shm_open`` skips leading slashes), or an error."""
    name = key.lstrip("/")
    if not name or len(name) > _MAX_KEY_CHARS or "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidArgumentError(f"invalid shared memory key '{_printable(key)}'")
    return name


class SharedMemoryRegistry:
    """Registered regions by name; thread-safe (backends run on threads)."""

    def __init__(
        self,
        enabled: bool = False,
        key_prefixes: tuple[str, ...] = (),
        max_regions: int = DEFAULT_MAX_REGIONS,
        max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
        directory: str = SHM_DIRECTORY,
    ) -> None:
        self.enabled = enabled
        self.key_prefixes = tuple(p.lstrip("/") for p in key_prefixes)
        self.max_regions = max_regions
        self.max_tensor_bytes = max_tensor_bytes
        self._directory = directory
        self._regions: dict[str, _Region] = {}
        self._lock = threading.Lock()

    # -- the extension's API ---------------------------------------------------------

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not self.enabled:
            raise UnsupportedError(DISABLED_MESSAGE)
        if not name:
            raise InvalidArgumentError(
                "'region name' is necessary to register system shared memory region"
            )
        segment = normalize_key(key)
        if not any(segment.startswith(prefix) for prefix in self.key_prefixes):
            raise InvalidArgumentError(
                f"shared memory key '{_printable(key)}' is not allowed: this server accepts "
                "keys that start with a prefix set by --shm-key-prefix"
                + ("" if self.key_prefixes else " (none is set)")
            )
        for value in (offset, byte_size):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= SIZE_MAX:
                raise InvalidArgumentError(
                    f"failed to register shared memory region '{_printable(name)}': invalid args"
                )
        if offset + byte_size > SIZE_MAX:
            raise InvalidArgumentError(_overflow(name, offset, byte_size))
        with self._lock:
            if name in self._regions:
                raise AlreadyExistsError(
                    f"shared memory region '{_printable(name)}' already in manager"
                )
            if len(self._regions) >= self.max_regions:
                raise InvalidArgumentError(
                    f"failed to register shared memory region '{_printable(name)}': the server "
                    f"holds its limit of {self.max_regions} regions; unregister some first"
                )
            fd = self._open(key, segment)
            try:
                size = os.fstat(fd).st_size
                if byte_size == 0 or offset + byte_size > size:
                    raise InvalidArgumentError(
                        f"failed to register shared memory region '{_printable(name)}': "
                        "invalid args"
                    )
            except BaseException:
                os.close(fd)
                raise
            self._regions[name] = _Region(name, key, offset, byte_size, fd)

    def _open(self, key: str, segment: str) -> int:
        error = InvalidArgumentError(f"Unable to open shared memory region: '{_printable(key)}'")
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(os.path.join(self._directory, segment), flags)
        except OSError:
            raise error from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise error
        return fd

    def status(self, name: str = "") -> list[RegionStatus]:
        with self._lock:
            if name:
                region = self._regions.get(name)
                if region is None:
                    raise NotFoundError(
                        f"Unable to find system shared memory region: '{_printable(name)}'"
                    )
                regions = [region]
            else:
                regions = list(self._regions.values())
            return [RegionStatus(r.name, r.key, r.offset, r.byte_size) for r in regions]

    def unregister(self, name: str = "") -> None:
        """One region, or all with ``name=""``; a missing name is not an error (Triton)."""
        with self._lock:
            names = [name] if name else list(self._regions)
            for each in names:
                region = self._regions.get(each)
                if region is None:
                    continue
                if region.users:
                    region.unregistering = True  # the last lease closes it
                    logger.debug("region %r unregisters when in-flight requests finish", each)
                else:
                    self._close(region)

    def close(self) -> None:
        """At shutdown: close every descriptor, in-flight or not."""
        with self._lock:
            for region in list(self._regions.values()):
                self._close(region)

    def _close(self, region: _Region) -> None:
        # Must hold the lock.
        self._regions.pop(region.name, None)
        with contextlib.suppress(OSError):  # already closed: nothing left to release
            os.close(region.fd)

    # -- leases ----------------------------------------------------------------------

    def _acquire(self, name: str) -> _Region:
        with self._lock:
            region = self._regions.get(name)
            if region is None or region.unregistering:
                raise NotFoundError(f"Unable to find shared memory region: '{_printable(name)}'")
            region.users += 1
            return region

    def _release(self, region: _Region) -> None:
        with self._lock:
            region.users -= 1
            if region.users == 0 and region.unregistering:
                self._close(region)

    @contextmanager
    def session(self) -> Iterator[SharedMemorySession]:
        """The regions one request uses, held until the block ends."""
        session = SharedMemorySession(self)
        try:
            yield session
        finally:
            session.release()


def _overflow(name: str, offset: int, byte_size: int) -> str:
    return (
        f"Integer overflow detected: byte_size ({byte_size}) + offset ({offset}) exceeds "
        f"maximum value ({SIZE_MAX}) for region '{_printable(name)}'"
    )


@dataclass(eq=False)
class SharedMemorySession:
    """What one request reads from and writes to client regions."""

    registry: SharedMemoryRegistry
    _leases: dict[str, _Region] = field(default_factory=dict)

    def _locate(self, ref: SharedMemoryReference) -> tuple[_Region, int]:
        """The leased region and the absolute segment offset of ``ref``, bounds-checked."""
        if not self.registry.enabled:
            raise UnsupportedError(DISABLED_MESSAGE)
        region = self._leases.get(ref.region)
        if region is None:
            region = self.registry._acquire(ref.region)
            self._leases[ref.region] = region
        name = _printable(ref.region)
        # Triton's order and wording (shared_memory_manager.cc GetMemoryInfo).
        if ref.offset >= region.byte_size:
            raise InvalidArgumentError(f"Invalid offset for shared memory region: '{name}'")
        if ref.byte_size > SIZE_MAX - ref.offset:
            raise InvalidArgumentError(_overflow(ref.region, ref.offset, ref.byte_size))
        if ref.offset + ref.byte_size > region.byte_size:
            raise InvalidArgumentError(
                f"Invalid offset + byte size for shared memory region: '{name}'"
            )
        return region, region.offset + ref.offset

    def read_input(
        self,
        ref: SharedMemoryReference,
        datatype: DataType,
        shape: tuple[int, ...],
        name: str,
        model: str,
        prefix: str,
    ) -> np.ndarray:
        region, position = self._locate(ref)
        count = element_count(shape)  # overflow-checked before anything is allocated
        if datatype is not DataType.BYTES:
            expected = count * datatype.itemsize
            if expected != ref.byte_size:
                raise InvalidArgumentError(
                    f"{prefix}input byte size mismatch for input '{name}' for model "
                    f"'{model}'. Expected {expected}, got {ref.byte_size}"
                )
        if ref.byte_size > self.registry.max_tensor_bytes:
            raise InvalidArgumentError(
                f"{prefix}input '{name}' for model '{model}' names {ref.byte_size} bytes of "
                f"shared memory, more than the limit of {self.registry.max_tensor_bytes}"
            )
        # A copy, not a mapping: see the module docstring (truncation, SIGBUS).
        buffer = bytearray(ref.byte_size)
        view = memoryview(buffer)
        done = 0
        while done < ref.byte_size:
            got = os.preadv(region.fd, [view[done:]], position + done)
            if got <= 0:
                raise InvalidArgumentError(
                    f"shared memory region '{_printable(ref.region)}' is smaller than when it "
                    "was registered"
                )
            done += got
        if datatype is DataType.BYTES:
            try:
                return deserialize_bytes(view, count).reshape(shape)
            except NaiadError as exc:
                raise InvalidArgumentError(
                    f"{prefix}{exc.message} for inference input '{name}' for model '{model}'"
                ) from None
        return np.frombuffer(buffer, dtype=datatype.numpy_dtype).reshape(shape)

    def output_target(self, ref: SharedMemoryReference) -> SharedMemoryTarget:
        _, position = self._locate(ref)
        return SharedMemoryTarget(ref.region, position, ref.byte_size)

    def write_output(
        self, target: SharedMemoryTarget, output: str, data: bytes | memoryview
    ) -> None:
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > target.byte_size:
            raise InvalidArgumentError(
                f"shared memory size specified with the request for output '{output}' "
                f"({target.byte_size} bytes) should be at least {size} bytes to hold the results"
            )
        region = self._leases[target.region]
        view = memoryview(data).cast("B")
        done = 0
        while done < size:
            done += os.pwrite(region.fd, view[done:], target.offset + done)

    def release(self) -> None:
        for region in self._leases.values():
            self.registry._release(region)
        self._leases.clear()
