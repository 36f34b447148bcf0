"""HTTP routes that answer with several responses: generate, generate_stream, SSE infer.

Errors before the model produced anything (unknown model, bad input) are ordinary
JSON error responses with their status; once a stream has started, an error is sent
as an event and the stream ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from naiad.core.service import InferenceService
from naiad.core.streaming import StreamItem
from naiad.errors import NaiadError, UnsupportedError
from naiad.frontends.http.generate import (
    decode_generate_request,
    generate_json,
    infer_json,
    sse_event,
)
from naiad.inference import InferenceRequest, InferenceResponse

SSE_HEADERS = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"))


async def send_stream(
    send: Any, status: int, headers: list[tuple[bytes, bytes]], chunks: AsyncIterator[bytes]
) -> None:
    """ASGI: the head, then each chunk as it comes (no content-length: chunked)."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _started(
    request: InferenceRequest, service: InferenceService
) -> tuple[StreamItem, AsyncIterator[StreamItem]]:
    """The first item (errors before the model ran raise here, before any byte is sent)."""
    items = service.infer_stream(request)
    first = await anext(items)
    return first, items


async def generate(
    service: InferenceService, name: str, version: str, body: Any, stream: bool
) -> dict[str, Any] | AsyncIterator[bytes]:
    """The generate answer (JSON), or generate_stream's events."""
    model = service.manager.get(name, version)
    request = decode_generate_request(name, version, body, model.io)
    first, items = await _started(request, service)
    if stream:
        return _events(first, items, generate_json)
    responses: list[InferenceResponse] = []
    item: StreamItem | None = first
    while item is not None:
        if item.error is not None:
            await items.aclose()  # type: ignore[attr-defined]
            raise item.error
        if item.response is not None and not item.empty:
            responses.append(item.response)
        item = None if item.final else await anext(items, None)
    if len(responses) != 1:
        raise UnsupportedError(
            f"generate expects exactly one response from model '{name}', got "
            f"{len(responses)}; use generate_stream"
        )
    return generate_json(responses[0])


async def infer_events(
    service: InferenceService, request: InferenceRequest
) -> AsyncIterator[bytes]:
    """/infer of a decoupled model as server-sent events (beyond Triton)."""
    first, items = await _started(request, service)
    return _events(first, items, infer_json)


async def _events(
    first: StreamItem,
    items: AsyncIterator[StreamItem],
    encode: Callable[[InferenceResponse], dict[str, Any]],
) -> AsyncIterator[bytes]:
    item: StreamItem | None = first
    try:
        while item is not None:
            if item.error is not None:
                yield sse_event({"error": item.error.message})
            elif item.response is not None and not item.empty:
                yield sse_event(encode(item.response))
            item = None if item.final else await anext(items, None)
    except NaiadError as exc:
        yield sse_event({"error": exc.message})
    finally:
        await items.aclose()  # type: ignore[attr-defined]
