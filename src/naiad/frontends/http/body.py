"""Reading an HTTP request body within limits, and gzip/deflate (de)compression.

The size limit (``--http-max-input-size``) applies to the body as received and again
after decompression, so a small compressed body cannot expand past it (a gzip bomb
stops at the limit, never allocating more).
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from naiad.errors import InvalidArgumentError, UnsupportedError

Receive = Callable[[], Awaitable[dict[str, Any]]]


class UnsupportedEncodingError(UnsupportedError):
    """An unknown Content-Encoding; the response also advertises what is accepted."""


def size_limit_error(size: int | str, limit: int) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"Request JSON size of {size} bytes exceeds the maximum allowed value of {limit} "
        "bytes. Use --http-max-input-size to increase the limit."
    )


async def read_body(receive: Receive, content_length: int | None, limit: int) -> bytes:
    """The whole request body; raises before reading past ``limit`` bytes."""
    if content_length is not None and content_length > limit:
        raise size_limit_error(content_length, limit)
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidArgumentError("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise size_limit_error(f"more than {limit}", limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, or deflate in its zlib wrapper) within ``limit``."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedEncodingError("Unsupported compression type")
    if not body:
        raise InvalidArgumentError("nothing to be decompressed")
    decompressor = zlib.decompressobj(wbits)
    try:
        out = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidArgumentError(
            f"failed to decompress the request body ({encoding}): {exc}"
        ) from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise size_limit_error(f"more than {limit}", limit)
    if not decompressor.eof:
        raise InvalidArgumentError(
            f"failed to decompress the request body ({encoding}): truncated data"
        )
    return out


def choose_response_encoding(accept_encoding: str) -> str:
    """``gzip`` or ``deflate`` when the client accepts one (gzip preferred), else ``""``."""
    offered: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        offered[name.strip().lower()] = quality
    for name in ("gzip", "deflate"):
        if offered.get(name, 0.0) > 0:
            return name
    return ""


def compress(parts: list[bytes | memoryview], encoding: str) -> bytes:
    if encoding == "gzip":
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    else:
        compressor = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS)
    out = [compressor.compress(part) for part in parts]
    out.append(compressor.flush())
    return b"".join(out)
