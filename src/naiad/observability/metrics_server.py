"""``GET /metrics`` on ``--metrics-port``: a tiny ASGI app on its own uvicorn listener.

It runs on the server's event loop, like the frontends, so a scrape reads the core's
counters on the thread that updates them (prometheus_client's threaded server would not).
The text is prometheus_client's exposition; the only change made to it is in the
``# HELP``/``# TYPE`` lines of counters: prometheus_client names a counter family
``<name>_total`` there, while Triton's counters (and their samples) carry no ``_total``.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

logger = logging.getLogger("naiad.metrics")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_COUNTER_HEADER = re.compile(rb"^# (HELP|TYPE) ([A-Za-z_:][A-Za-z0-9_:]*)_total( .*)?$", re.M)


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format, counter headers named like their samples."""
    text = generate_latest(registry)
    # A counter whose samples end in _total keeps its header; one whose samples do not
    # (every Triton counter) gets the header named as its samples.
    sample_names = set(re.findall(rb"^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", text, re.M))

    def rename(match: re.Match[bytes]) -> bytes:
        base = match.group(2)
        if base + b"_total" in sample_names:
            return match.group(0)
        return b"# " + match.group(1) + b" " + base + (match.group(3) or b"")

    return _COUNTER_HEADER.sub(rename, text)


class MetricsApp:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            await _respond(send, 404, b"Not Found\n", b"text/plain; charset=utf-8")
        elif scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"Method Not Allowed\n", b"text/plain; charset=utf-8")
        else:
            try:
                body = exposition(self._registry)
            except Exception:
                logger.exception("failed to collect metrics")
                await _respond(send, 500, b"failed to collect metrics\n", b"text/plain")
                return
            payload = b"" if scope["method"] == "HEAD" else body
            await _respond(send, 200, payload, CONTENT_TYPE_PLAIN_0_0_4.encode(), len(body))


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, length: int | None = None
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body) if length is None else length).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def start_metrics_listener(
    app: MetricsApp, family: socket.AddressFamily, host: str, port: int
) -> tuple[uvicorn.Server, int]:
    """Bind and serve; returns the server and the bound port (``port`` 0: any free one)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    config = uvicorn.Config(
        app,
        loop="none",
        http="httptools",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    return server, sock.getsockname()[1]
