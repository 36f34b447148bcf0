"""Frames between the server and a worker: a small JSON header plus raw tensor bytes.

A frame is a 12-byte prefix (header length as u32, payload length as u64, both
little-endian), the header (a JSON object), then the payload. Tensor bytes go either
inline in the payload or, when they are large and shared memory is on, into one
``memfd`` for the whole frame, whose file descriptor travels with the frame's first
byte as ``SCM_RIGHTS`` ancillary data. A memfd has no name in ``/dev/shm``: its size is
not limited by that mount, and the kernel frees it when the last mapping or descriptor
goes away, even if either process is killed, so nothing can leak.

Standard library only: workers may run under a model's own interpreter.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PREFIX = struct.Struct("<IQ")
# Inline tensors start on this boundary so numpy views of them are aligned.
ALIGN = 64
# Tensors at least this large go through shared memory (when it is on). A fresh memfd
# per frame costs page allocation and faults on both sides; measured on a 2-vCPU VM,
# the socket was as fast or faster up to 16 MiB (docs/python-backend.md has numbers).
DEFAULT_SHM_THRESHOLD_BYTES = 16 * 1024 * 1024
# Largest header accepted: headers describe tensors, they never carry their bytes.
MAX_HEADER_BYTES = 64 * 1024 * 1024
# Where a tensor's bytes are: inline in the frame payload, or in the frame's memfd.
INLINE = 0
SHARED = 1
_STAGE_BYTES = 256 * 1024
_ANCILLARY_BYTES = socket.CMSG_SPACE(16 * 4)
_ZEROS = bytes(ALIGN)

Dumps = Callable[[Any], bytes]
Loads = Callable[[bytes | bytearray | memoryview], Any]


class ChannelClosed(Exception):
    """The other end closed the socket (or the process behind it died)."""


@dataclass(slots=True)
class Frame:
    """One received frame: its header, inline payload and mapped memfd (if any)."""

    header: dict[str, Any]
    payload: bytearray
    shared: mmap.mmap | None = None

    def tensor_bytes(self, where: int, offset: int, nbytes: int) -> memoryview:
        source = self.payload if where == INLINE else self.shared
        if source is None:
            raise ValueError("frame carries no shared memory for a SHARED tensor")
        if offset < 0 or nbytes < 0 or offset + nbytes > len(source):
            raise ValueError("tensor bytes lie outside the frame")
        return memoryview(source)[offset : offset + nbytes]


def memfd_supported() -> bool:
    """Whether this platform can create memfds (Linux; not blocked by a sandbox)."""
    if not hasattr(os, "memfd_create"):
        return False
    try:
        fd = os.memfd_create("naiad-probe", os.MFD_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


class PayloadBuilder:
    """Lays out the tensor bytes of one frame: inline, or in one memfd when large."""

    def __init__(self, shared_memory: bool, threshold: int = DEFAULT_SHM_THRESHOLD_BYTES):
        self._shared_memory = shared_memory
        self._threshold = threshold
        self.parts: list[memoryview | bytes] = []
        self.size = 0
        self._shared: list[tuple[list[Any], memoryview | bytes]] = []
        self._shared_size = 0

    def add(self, data: memoryview | bytes, descriptor: list[Any]) -> None:
        """Place ``data``; ``descriptor[-3:]`` becomes ``[where, offset, nbytes]``."""
        nbytes = len(data) if isinstance(data, bytes) else data.nbytes
        if self._shared_memory and nbytes >= self._threshold:
            offset = _aligned(self._shared_size)
            descriptor.extend((SHARED, offset, nbytes))
            self._shared.append((descriptor, data))
            self._shared_size = offset + nbytes
            return
        if self.size or not nbytes:
            descriptor.extend((INLINE, self._inline(data, nbytes), nbytes))
            return
        # The first inline tensor (usually the only one) starts at 0: nothing to align.
        self.parts.append(data)
        self.size = nbytes
        descriptor.extend((INLINE, 0, nbytes))

    def _inline(self, data: memoryview | bytes, nbytes: int) -> int:
        pad = _aligned(self.size) - self.size
        if pad:
            self.parts.append(_ZEROS[:pad])
        offset = self.size + pad
        if nbytes:
            self.parts.append(data)
        self.size = offset + nbytes
        return offset

    @property
    def shared_size(self) -> int:
        return self._shared_size if self._shared else 0

    def finish(self) -> int | None:
        """Write the shared part into a new memfd and return its descriptor (or None).

        If the memfd cannot be made (out of memory, sandbox), those tensors move inline.
        """
        if not self._shared:
            return None
        try:
            fd = os.memfd_create("naiad-tensors", os.MFD_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                os.ftruncate(fd, self._shared_size)
                for descriptor, data in self._shared:
                    _write_all(fd, data, descriptor[-2])
                return fd
            except OSError:
                os.close(fd)
        for descriptor, data in self._shared:
            descriptor[-3:] = [INLINE, self._inline(data, descriptor[-1]), descriptor[-1]]
        self._shared.clear()
        return None


def _aligned(size: int) -> int:
    return (size + ALIGN - 1) // ALIGN * ALIGN


def _write_all(fd: int, data: memoryview | bytes, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def frame_buffers(header: bytes, parts: list[memoryview | bytes], size: int) -> list[Any]:
    return [PREFIX.pack(len(header), size) + header, *parts]


class FrameReader:
    """Reassembles frames from a stream socket, with the memfds that came along."""

    def __init__(self, loads: Loads) -> None:
        self._loads = loads
        self._stage = bytearray(_STAGE_BYTES)
        self._stage_view = memoryview(self._stage)
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        # A frame whose payload is still arriving: (header, payload, filled).
        self._partial: tuple[dict[str, Any], bytearray, int] | None = None
        self.frames: deque[Frame] = deque()

    def read_once(self, sock: socket.socket) -> bool:
        """One ``recvmsg``; raises BlockingIOError when nothing is there yet.

        Returns whether the read filled its buffer. A short read of a stream socket
        emptied it (or stopped at a descriptor's boundary, which a level-triggered
        poll reports again), so readers can stop without a read that only fails.
        """
        if self._partial is not None:
            header, payload, filled = self._partial
            target = memoryview(payload)[filled:]
        else:
            target = self._stage_view
        count, ancillary, _flags, _ = sock.recvmsg_into([target], _ANCILLARY_BYTES)
        if ancillary:
            self._take_fds(ancillary)
        if count == 0:
            raise ChannelClosed("the other end closed the channel")
        if self._partial is not None:
            filled += count
            if filled == len(payload):
                self._partial = None
                self._deliver(header, payload)
            else:
                self._partial = (header, payload, filled)
            return count == len(target)
        buffer = self._buffer
        if buffer:
            buffer += self._stage_view[:count]
            del buffer[: self._parse(buffer, len(buffer))]
        else:
            # The usual case: whole frames straight from the stage, no staging copy.
            used = self._parse(self._stage, count)
            if used < count:
                buffer += self._stage_view[used:count]
        return count == len(target)

    def _take_fds(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(data) - len(data) % 4
                self._fds.extend(struct.unpack(f"<{usable // 4}i", data[:usable]))

    def _parse(self, buffer: bytearray, end: int) -> int:
        """Deliver the whole frames in ``buffer[:end]``; how many bytes they took.

        A frame whose payload has not all arrived becomes the partial frame (its bytes
        so far count as taken); an incomplete prefix or header is left in place.
        """
        start = 0
        while end - start >= PREFIX.size:
            header_len, payload_len = PREFIX.unpack_from(buffer, start)
            if header_len > MAX_HEADER_BYTES:
                raise ChannelClosed(f"frame header of {header_len} bytes is too large")
            body = start + PREFIX.size
            begin = body + header_len
            if end < begin:
                break
            # Copies, not views: the buffer is reused (or trimmed) after this.
            header = self._loads(buffer[body:begin])
            available = end - begin
            if available >= payload_len:
                self._deliver(header, buffer[begin : begin + payload_len])
                start = begin + payload_len
                continue
            payload = bytearray(payload_len)
            payload[:available] = buffer[begin:end]
            self._partial = (header, payload, available)
            return end
        return start

    def _deliver(self, header: dict[str, Any], payload: bytearray) -> None:
        shared = None
        size = header.get("shm", 0)
        if size:
            if not self._fds:
                raise ChannelClosed("frame announces shared memory but no descriptor came")
            fd = self._fds.popleft()
            try:
                shared = mmap.mmap(fd, size)
            finally:
                os.close(fd)
        self.frames.append(Frame(header, payload, shared))

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popleft())
