"""The core shared memory registry: keys, bounds, leases and deferred unregister."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from naiad.core.shared_memory import (
    SIZE_MAX,
    SharedMemoryReference,
    SharedMemoryRegistry,
    normalize_key,
    pop_reference,
)
from naiad.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError, UnsupportedError
from naiad.tensors import DataType, serialize_bytes


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A stand-in for /dev/shm: the registry only needs a directory of segments."""
    return tmp_path


def _segment(directory: Path, name: str, data: bytes) -> str:
    (directory / name).write_bytes(data)
    return f"/{name}"


@pytest.fixture
def registry(directory: Path) -> Iterator[SharedMemoryRegistry]:
    made = SharedMemoryRegistry(True, ("client_",), directory=str(directory))
    yield made
    made.close()


def test_disabled_registry_refuses_with_tritons_message() -> None:
    registry = SharedMemoryRegistry(enabled=False)
    with pytest.raises(UnsupportedError, match="--allow-client-shm=true"):
        registry.register("r", "/client_x", 0, 8)
    assert registry.status() == []
    registry.unregister()  # clients unregister first: never an error


@pytest.mark.parametrize("key", ["", "/", "///", "/a/b", "..", "/..", "a\0b", "x" * 300])
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidArgumentError):
        normalize_key(key)


def test_leading_slashes_do_not_escape_the_allow_list(
    registry: SharedMemoryRegistry, directory: Path
) -> None:
    _segment(directory, "other", b"\0" * 8)
    for key in ("/other", "//other", "other"):
        with pytest.raises(InvalidArgumentError, match="is not allowed"):
            registry.register("r", key, 0, 8)
    key = _segment(directory, "client_a", b"\0" * 8)
    registry.register("r", "//" + key, 0, 8)  # allowed: same segment, extra slashes


def test_no_prefix_means_no_key(directory: Path) -> None:
    registry = SharedMemoryRegistry(True, (), directory=str(directory))
    key = _segment(directory, "client_a", b"\0" * 8)
    with pytest.raises(InvalidArgumentError, match="none is set"):
        registry.register("r", key, 0, 8)


def test_registration_bounds(registry: SharedMemoryRegistry, directory: Path) -> None:
    key = _segment(directory, "client_b", b"\0" * 64)
    for offset, size in ((64, 1), (0, 65), (1, 64), (0, 0)):
        with pytest.raises(InvalidArgumentError, match="invalid args"):
            registry.register("r", key, offset, size)
    with pytest.raises(InvalidArgumentError, match="Integer overflow detected"):
        registry.register("r", key, SIZE_MAX, 2)
    with pytest.raises(InvalidArgumentError, match="invalid args"):
        registry.register("r", key, -1, 8)
    registry.register("r", key, 8, 56)
    with pytest.raises(AlreadyExistsError):
        registry.register("r", key, 0, 8)
    assert [(s.name, s.key, s.offset, s.byte_size) for s in registry.status()] == [
        ("r", key, 8, 56)
    ]


def test_symlinks_and_non_files_are_refused(
    registry: SharedMemoryRegistry, directory: Path
) -> None:
    target = directory / "outside"
    target.write_bytes(b"secret" * 10)
    (directory / "client_link").symlink_to(target)
    (directory / "client_dir").mkdir()
    os.mkfifo(directory / "client_fifo")
    for name in ("client_link", "client_dir", "client_fifo", "client_missing"):
        with pytest.raises(InvalidArgumentError, match="Unable to open shared memory region"):
            registry.register("r", f"/{name}", 0, 8)
    assert registry.status() == []


def test_region_limit(directory: Path) -> None:
    registry = SharedMemoryRegistry(True, ("client_",), max_regions=2, directory=str(directory))
    key = _segment(directory, "client_c", b"\0" * 8)
    registry.register("a", key, 0, 8)
    registry.register("b", key, 0, 8)
    with pytest.raises(InvalidArgumentError, match="limit of 2 regions"):
        registry.register("c", key, 0, 8)
    registry.close()


def test_read_and_write_with_bounds(registry: SharedMemoryRegistry, directory: Path) -> None:
    values = np.arange(4, dtype=np.int32)
    key = _segment(directory, "client_d", b"\xff" * 4 + values.tobytes() + b"\0" * 16)
    registry.register("r", key, 4, 32)
    with registry.session() as shm:
        array = shm.read_input(
            SharedMemoryReference("r", 16, 0), DataType.INT32, (4,), "IN", "m", ""
        )
        np.testing.assert_array_equal(array, values)
        for offset, size, message in (
            (32, 4, "Invalid offset for"),
            (20, 16, "Invalid offset \\+ byte size"),
            (1, SIZE_MAX, "Integer overflow detected"),
        ):
            with pytest.raises(InvalidArgumentError, match=message):
                shm.read_input(
                    SharedMemoryReference("r", size, offset), DataType.UINT8, (size,), "I", "m", ""
                )
        with pytest.raises(InvalidArgumentError, match="input byte size mismatch"):
            shm.read_input(SharedMemoryReference("r", 12, 0), DataType.INT32, (4,), "IN", "m", "")
        target = shm.output_target(SharedMemoryReference("r", 16, 16))
        blob = serialize_bytes(np.array([b"ab", b"cdef"], dtype=np.object_))
        shm.write_output(target, "OUT", blob)  # 14 bytes into 16
        with pytest.raises(InvalidArgumentError, match="should be at least 17 bytes"):
            shm.write_output(target, "OUT", b"x" * 17)
    assert (directory / "client_d").read_bytes()[20:34] == blob


def test_truncated_segment_is_an_error_not_a_crash(
    registry: SharedMemoryRegistry, directory: Path
) -> None:
    key = _segment(directory, "client_e", b"\0" * 64)
    registry.register("r", key, 0, 64)
    os.truncate(directory / "client_e", 8)
    with registry.session() as shm, pytest.raises(InvalidArgumentError, match="smaller than"):
        shm.read_input(SharedMemoryReference("r", 64, 0), DataType.UINT8, (64,), "I", "m", "")


def test_unregister_waits_for_in_flight_requests(
    registry: SharedMemoryRegistry, directory: Path
) -> None:
    key = _segment(directory, "client_f", b"\0" * 8)
    registry.register("r", key, 0, 8)
    with registry.session() as shm:
        shm.output_target(SharedMemoryReference("r", 8, 0))
        registry.unregister("r")
        # Still listed while the request holds it; new requests cannot use it.
        assert [s.name for s in registry.status()] == ["r"]
        with registry.session() as other, pytest.raises(NotFoundError):
            other.output_target(SharedMemoryReference("r", 8, 0))
        shm.write_output(shm.output_target(SharedMemoryReference("r", 8, 0)), "OUT", b"12345678")
    assert registry.status() == []
    assert (directory / "client_f").read_bytes() == b"12345678"
    assert (directory / "client_f").exists()  # the client's segment is never unlinked


def test_pop_reference_checks_types() -> None:
    params: dict[str, bool | int | float | str | bytes] = {
        "shared_memory_region": "r",
        "shared_memory_byte_size": 8,
        "other": 1,
    }
    assert pop_reference(params, "input", "I") == SharedMemoryReference("r", 8, 0)
    assert params == {"other": 1}
    for bad in (
        {"shared_memory_region": "r"},
        {"shared_memory_region": "", "shared_memory_byte_size": 8},
        {"shared_memory_region": "r", "shared_memory_byte_size": -1},
        {"shared_memory_region": "r", "shared_memory_byte_size": 2**64},
        {"shared_memory_region": "r", "shared_memory_byte_size": True},
        {"shared_memory_byte_size": 8},
    ):
        with pytest.raises(InvalidArgumentError):
            pop_reference(dict(bad), "input", "I")  # type: ignore[arg-type]


def test_real_dev_shm_segment() -> None:
    """The default directory: a real POSIX segment made with multiprocessing."""
    from multiprocessing import shared_memory

    name = f"client_unit_{uuid.uuid4().hex[:8]}"
    segment = shared_memory.SharedMemory(name, create=True, size=16)
    try:
        registry = SharedMemoryRegistry(True, ("client_unit_",))
        registry.register("r", f"/{name}", 0, 16)
        with registry.session() as shm:
            shm.write_output(shm.output_target(SharedMemoryReference("r", 4, 4)), "O", b"abcd")
        assert bytes(segment.buf[4:8]) == b"abcd"
        registry.close()
    finally:
        segment.close()
        segment.unlink()
