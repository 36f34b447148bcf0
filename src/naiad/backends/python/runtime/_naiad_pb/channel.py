"""One end of the server-worker socket: blocking for hand-shakes, or on an asyncio loop.

Both sides use this class. Before ``attach`` every call blocks (start-up, auto-complete,
shutdown, and a worker's ``initialize``); once attached, reads are driven by the loop's
``add_reader`` and writes never block: what the socket does not take at once waits in
a queue that ``add_writer`` drains. ``send`` is safe from any thread.
Standard library only: workers may run under a model's own interpreter.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .wire import ChannelClosed, Dumps, Frame, FrameReader, Loads, PayloadBuilder, frame_buffers

# Linux's IOV_MAX is 1024; stay under it for one sendmsg.
_MAX_BUFFERS = 1000
# Reads per readiness callback, so a chatty peer cannot starve the loop.
_READS_PER_CALLBACK = 64

OnFrame = Callable[[Frame], None]
OnClose = Callable[[BaseException], None]


class Channel:
    def __init__(self, sock: socket.socket, dumps: Dumps, loads: Loads) -> None:
        self.sock = sock
        self._dumps = dumps
        self._reader = FrameReader(loads)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._on_frame: OnFrame | None = None
        self._on_close: OnClose | None = None
        # Frames not yet fully written: [buffers still to send, memfd to pass or None].
        self._pending: deque[list[Any]] = deque()
        self._writer_armed = False
        self._lock = threading.Lock()
        self.closed = False

    # -- sending ---------------------------------------------------------------------

    def send(self, header: dict[str, Any], payload: PayloadBuilder | None = None) -> None:
        """Send one frame (the header is completed with the shared-memory size)."""
        fd = payload.finish() if payload is not None else None
        if fd is not None and payload is not None:
            header["shm"] = payload.shared_size
        buffers = frame_buffers(
            self._dumps(header),
            payload.parts if payload is not None else [],
            payload.size if payload is not None else 0,
        )
        loop = self._loop
        if loop is None:
            self._send_blocking(buffers, fd)
        elif threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._enqueue, buffers, fd)
        elif fd is None and not self._pending and not self.closed and len(buffers) <= _MAX_BUFFERS:
            # The usual case, one small frame and an idle socket: one sendmsg, no queue.
            try:
                sent = self.sock.sendmsg(buffers)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._closed(exc)
                return
            total = len(buffers[0]) + (payload.size if payload is not None else 0)
            if sent < total:
                entry: list[Any] = [buffers, None]
                _trim(entry, sent)
                self._pending.append(entry)
                self._flush()
        else:
            self._enqueue(buffers, fd)

    def _send_blocking(self, buffers: list[Any], fd: int | None) -> None:
        with self._lock:
            entry: list[Any] = [buffers, fd]
            try:
                while entry[0]:
                    self._send_some(entry)
            finally:
                if entry[1] is not None:
                    os.close(entry[1])

    def _enqueue(self, buffers: list[Any], fd: int | None) -> None:
        if self.closed:
            if fd is not None:
                os.close(fd)
            return
        self._pending.append([buffers, fd])
        if not self._writer_armed:
            self._flush()

    def _flush(self) -> None:
        try:
            while self._pending:
                entry = self._pending[0]
                self._send_some(entry)
                if entry[0]:
                    break
                self._pending.popleft()
        except BlockingIOError:
            pass
        except OSError as exc:
            self._closed(exc)
            return
        assert self._loop is not None
        if self._pending and not self._writer_armed:
            self._loop.add_writer(self.sock.fileno(), self._flush)
            self._writer_armed = True
        elif not self._pending and self._writer_armed:
            self._loop.remove_writer(self.sock.fileno())
            self._writer_armed = False

    def _send_some(self, entry: list[Any]) -> None:
        """One sendmsg of ``entry``'s buffers; trims what went out (the memfd goes first)."""
        buffers, fd = entry
        ancillary = []
        if fd is not None:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, "little"))]
        sent = self.sock.sendmsg(buffers[:_MAX_BUFFERS], ancillary)
        if fd is not None:
            # The descriptor was passed with the first byte; ours is no longer needed.
            os.close(fd)
            entry[1] = None
        _trim(entry, sent)

    # -- receiving -------------------------------------------------------------------

    def recv_blocking(self, timeout_s: float | None = None) -> Frame:
        """The next frame; raises ChannelClosed at end of stream, TimeoutError on timeout."""
        frames = self._reader.frames
        self.sock.settimeout(timeout_s)
        try:
            while not frames:
                try:
                    self._reader.read_once(self.sock)
                except TimeoutError:
                    raise TimeoutError(f"no message within {timeout_s} s") from None
                except ConnectionError as exc:
                    raise ChannelClosed(str(exc)) from None
        finally:
            self.sock.settimeout(None)
        return frames.popleft()

    # -- the event loop --------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, on_frame: OnFrame, on_close: OnClose) -> None:
        """Hand reading and writing to ``loop`` (call from the loop's thread)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._on_frame = on_frame
        self._on_close = on_close
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._on_readable)
        if self._reader.frames:  # arrived during the blocking phase
            loop.call_soon(self._deliver)

    def detach(self) -> None:
        """Take the channel back from its loop (call from the loop's thread): blocking again."""
        loop = self._loop
        if loop is None:
            return
        if not self.closed:
            loop.remove_reader(self.sock.fileno())
            if self._writer_armed:
                loop.remove_writer(self.sock.fileno())
        self._writer_armed = False
        self._loop = None
        self._loop_thread = None
        if self.closed:
            return
        self.sock.setblocking(True)
        while self._pending:
            buffers, fd = self._pending.popleft()
            self._send_blocking(buffers, fd)

    def _read_burst(self) -> BaseException | None:
        """Read what the socket holds (a bounded burst); the error that ended it, if any."""
        try:
            for _ in range(_READS_PER_CALLBACK):
                if not self._reader.read_once(self.sock):
                    break
        except BlockingIOError:
            pass
        except (ChannelClosed, OSError) as exc:
            return exc
        return None

    def _on_readable(self) -> None:
        error = self._read_burst()
        self._deliver()
        if error is not None:
            self._closed(error)

    def pump_until(self, done: Callable[[], bool], take: Callable[[Frame], bool]) -> None:
        """Drive the socket from the loop's thread while the loop itself cannot run.

        A blocking BLS call inside a sync ``execute`` holds the loop's thread: read and
        write here until ``done()``. ``take`` handles a frame at once (True) or leaves it,
        in order, for the loop to deliver afterwards.
        """
        left: list[Frame] = []
        try:
            while not done():
                if self.closed:
                    raise ChannelClosed("the server closed the channel")
                writers = [self.sock] if self._pending else []
                readable, writable, _ = select.select([self.sock], writers, [], 1.0)
                if writable:
                    self._flush()
                if not readable:
                    continue
                error = self._read_burst()
                frames = self._reader.frames
                while frames:
                    frame = frames.popleft()
                    if not take(frame):
                        left.append(frame)
                if error is not None:
                    self._closed(error)
        finally:
            if left:
                self._reader.frames.extendleft(reversed(left))
                if self._loop is not None:
                    self._loop.call_soon(self._deliver)

    def poll(self, take: Callable[[Frame], bool]) -> None:
        """Read what the socket holds now, without blocking, from the loop's thread.

        For a sync ``execute`` that holds the loop: ``take`` handles a frame at once
        (True) or leaves it, in order, for the loop to deliver afterwards.
        """
        if self.closed or self._loop is None or threading.get_ident() != self._loop_thread:
            return
        error = self._read_burst()
        frames = self._reader.frames
        if frames:
            left = [frame for frame in frames if not take(frame)]
            frames.clear()
            frames.extend(left)
            if left:
                self._loop.call_soon(self._deliver)
        if error is not None:
            self._closed(error)

    def _deliver(self) -> None:
        frames = self._reader.frames
        while frames and self._on_frame is not None:
            self._on_frame(frames.popleft())

    def _closed(self, error: BaseException) -> None:
        if self.closed:
            return
        on_close = self._on_close
        self.close()
        if on_close is not None:
            on_close(error)

    def close(self) -> None:
        """Close the socket; a loop still attached stops watching it."""
        if self.closed:
            return
        self.closed = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.sock.fileno())
            if self._writer_armed:
                loop.remove_writer(self.sock.fileno())
        self._writer_armed = False
        for _buffers, fd in self._pending:
            if fd is not None:
                os.close(fd)
        self._pending.clear()
        self._reader.close()
        self.sock.close()


def _trim(entry: list[Any], sent: int) -> None:
    """Drop the first ``sent`` bytes of ``entry``'s buffers (what the socket took)."""
    buffers = entry[0]
    index = 0
    while index < len(buffers) and sent >= len(buffers[index]):
        sent -= len(buffers[index])
        index += 1
    rest = buffers[index:]
    if rest and sent:
        rest[0] = memoryview(rest[0])[sent:]
    entry[0] = rest
