"""uvicorn's httptools protocol with the limits an ASGI app cannot enforce itself.

The ASGI app sees the body only as uvicorn joins it, so these are counted here, where
the parser reports them:

- header bytes (request line and headers) before the headers end: httptools buffers a
  header value whole before reporting it, so the bytes are counted as they arrive and
  the connection is answered 431 past ``max_header_bytes``;
- non-empty chunks of a chunked body (Triton's cap of 65,536 after CVE-2025-23310:
  many tiny chunks cost per-chunk work and memory);
- time to read one request, headers and body (slowloris): 408 past ``read_timeout_s``.

A connection lost while an inference runs cancels the task awaiting it (the app puts
that task in the scope under ``TASK_KEY``), so the model sees ``is_cancelled()``.

A refusal is written straight to the transport and the connection is closed, as
uvicorn answers malformed requests; the app's pending ``receive`` then sees a
disconnect and its task ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_CHUNKS = 65536  # Triton's kMaxChunkedChunks
DEFAULT_READ_TIMEOUT_S = 60.0
_LINGER_S = 2.0  # how long a refused connection drains before it is closed
# Scope keys shared with app.py: the task awaiting an inference, and that we cancelled it.
TASK_KEY = "naiad.infer_task"
CANCELLED_KEY = "naiad.cancelled"
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_chunks: int = DEFAULT_MAX_CHUNKS
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_done = False
        self._header_bytes = 0
        self._chunk_started = False
        self._chunks = 0
        self._parsed_header_bytes = 0
        self._refused = False
        self._read_timer: asyncio.TimerHandle | None = None

    # -- timers ----------------------------------------------------------------------

    def _arm_read_timer(self) -> None:
        self._cancel_read_timer()
        if self.limits.read_timeout_s > 0:
            self._read_timer = self.loop.call_later(
                self.limits.read_timeout_s, self._read_timed_out
            )

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        self._refuse(
            408,
            f"the request was not received within {self.limits.read_timeout_s:g} s "
            "(--http-read-timeout-secs)",
        )

    # -- protocol and parser callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_timer()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            scope: dict[str, Any] = cycle.scope  # type: ignore[assignment]
            task: asyncio.Task[Any] | None = scope.get(TASK_KEY)
            if task is not None and not task.done():
                scope[CANCELLED_KEY] = True
                task.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the refusal is written; drop the rest until the close completes
        if not self._headers_done:
            self._header_bytes += len(data)
        super().data_received(data)
        # Counted only while the headers are still incomplete after this read, so a
        # read that also holds the start of the body never counts as header bytes.
        if not self._headers_done and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(431, self._header_message())

    def _header_message(self) -> str:
        return (
            f"request headers exceed the maximum of {self.limits.max_header_bytes} bytes "
            "(--http-max-header-size)"
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_header_bytes = 0
        self._chunks = 0
        self._chunk_started = False
        self._arm_read_timer()

    def on_url(self, url: bytes) -> None:
        self._parsed_header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # +4 for ": " and CRLF, as they were on the wire.
        self._parsed_header_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        # Headers that arrived in one read are counted here, before the app starts.
        if self._parsed_header_bytes > self.limits.max_header_bytes:
            self._refuse(431, self._header_message())
            return
        self._headers_done = True
        super().on_headers_complete()
        cycle = self.cycle
        # A cycle that was not created here (an upgrade returns early) keeps its transport.
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = _HeadWithBody(self.transport, cycle, self.loop)  # type: ignore[assignment]

    def on_chunk_header(self) -> None:
        self._chunk_started = True

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        if self._chunk_started:
            self._chunk_started = False
            self._chunks += 1
            if self._chunks > self.limits.max_chunks:
                self._refuse(
                    400,
                    f"Chunked request body exceeds maximum of {self.limits.max_chunks} "
                    "non-empty chunks. Send fewer or larger HTTP chunks.",
                )
                return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._cancel_read_timer()
        self._headers_done = False
        self._header_bytes = 0
        super().on_message_complete()

    # -- refusal -----------------------------------------------------------------------

    def _refuse(self, status: int, message: str) -> None:
        if self._refused or self.transport is None or self.transport.is_closing():
            return
        self._refused = True
        self._cancel_read_timer()
        # Before its headers are complete a request has no cycle yet; self.cycle is then
        # the previous request's on this connection, which must not be touched.
        cycle = self.cycle if self._headers_done else None
        if cycle is None or not cycle.response_started:
            body = orjson.dumps({"error": message})
            head = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n"
            ) % (status, _REASONS[status], len(body))
            self.transport.write(head + body)
        if cycle is not None:
            # The app must not answer too (its response would follow ours): to it the
            # client is gone, which ends a pending receive.
            cycle.disconnected = True
            cycle.message_event.set()
        self._linger_close()

    def _linger_close(self) -> None:
        # Closing with unread request bytes in the socket would send a reset, and the
        # client could lose the answer. So send FIN after the answer, drop what still
        # arrives, and close when the client does or after a moment.
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_S, self._close_now)
        else:
            self.transport.close()

    def on_response_complete(self) -> None:
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            # Answered before the body was all received (a refusal, e.g. a declared
            # size over the limit): reading the rest to keep the connection alive would
            # let the client decide how much the server reads for nothing.
            self._cancel_read_timer()
            self._linger_close()
            return
        super().on_response_complete()

    def _close_now(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()


class _HeadWithBody:
    """One request's view of the transport: the response head goes out with the body.

    uvicorn writes the status line and headers as soon as the app sends
    ``http.response.start``, then the body in a second write: two send() calls and two
    TCP segments per response. Profiles of small inferences put about 15 % of the event
    loop's time in that first write. Here the head is held and joined to the next write,
    which for a plain response comes in the same task step; a head with nothing after
    it (HEAD, 204, a stream still waiting for its first chunk) goes out on the loop's
    next iteration, before any later request on the connection can answer.
    """

    __slots__ = ("_cycle", "_head", "_head_seen", "_loop", "_transport")

    def __init__(self, transport: Any, cycle: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._cycle = cycle
        self._loop = loop
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif not self._head_seen and self._cycle.response_started:
            # The first write after the response started is its head (a 100 Continue
            # is written before that, and goes out at once).
            self._head_seen = True
            self._head = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...
        return getattr(self._transport, name)


def limited_protocol(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """A protocol class with ``limits`` (uvicorn instantiates the class per connection)."""
    return type("NaiadHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
