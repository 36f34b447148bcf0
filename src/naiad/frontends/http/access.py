"""ASGI middleware in front of the HTTP app: access control, and CORS / cross-origin refusal.

:func:`classify_path` maps every path the app could route to Triton's restricted API
group, by prefix, so a route added to the app later is covered by the group of its
prefix instead of escaping the check. The middleware answers refusals itself, before
the request body is read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from naiad.security.access import AccessPolicy, DenialKind
from naiad.security.restrictions import ApiGroup

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_PROBES = frozenset({"/v2/health/live", "/v2/health/ready"})
_MODEL = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]*)?(?:/(.*))?$")
_PREFIX_GROUPS = (
    ("/v2/health/", ApiGroup.HEALTH),
    ("/v2/repository", ApiGroup.MODEL_REPOSITORY),
    ("/v2/systemsharedmemory", ApiGroup.SHARED_MEMORY),
    ("/v2/cudasharedmemory", ApiGroup.SHARED_MEMORY),
    ("/v2/trace", ApiGroup.TRACE),
    ("/v2/logging", ApiGroup.LOGGING),
    # Beyond Triton: the dashboard's data is the statistics and model states.
    ("/dashboard/", ApiGroup.STATISTICS),
)
_MODEL_ACTIONS = {
    None: ApiGroup.METADATA,
    "": ApiGroup.METADATA,
    "ready": ApiGroup.HEALTH,
    "config": ApiGroup.MODEL_CONFIG,
    "stats": ApiGroup.STATISTICS,
}


def classify_path(path: str) -> ApiGroup | None:
    """Triton's restricted API group of ``path`` (as ``http_server.cc`` assigns them).

    Anything under ``/v2/models/`` that is not metadata, readiness, config, statistics
    or trace counts as inference, the strictest reading; paths outside every group
    (which the app answers 404) return ``None``.
    """
    if path in ("/v2", "/v2/"):
        return ApiGroup.METADATA
    if path == "/v2/models/stats":
        return ApiGroup.STATISTICS
    if path.startswith("/v2/models/"):
        match = _MODEL.match(path)
        action = match.group(1) if match else "?"
        if action is not None and action.startswith("trace"):
            return ApiGroup.TRACE
        return _MODEL_ACTIONS.get(action, ApiGroup.INFERENCE)
    for prefix, group in _PREFIX_GROUPS:
        if path.startswith(prefix):
            return group
    return None


def _header_values(scope: Scope) -> Callable[[str], list[str]]:
    headers: list[tuple[bytes, bytes]] = scope["headers"]

    def values(name: str) -> list[str]:
        key = name.encode("latin-1")
        return [v.decode("latin-1") for k, v in headers if k == key]

    return values


async def _refuse(
    send: Send, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = orjson.dumps({"error": message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AccessMiddleware:
    """Runs :meth:`AccessPolicy.check` for every HTTP request before the app sees it."""

    def __init__(self, app: App, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            denial = self.policy.check(classify_path(path), _header_values(scope), path in _PROBES)
            if denial is not None:
                if denial.kind is DenialKind.UNAUTHENTICATED:
                    await _refuse(send, 401, denial.message, [(b"www-authenticate", b"Bearer")])
                else:
                    await _refuse(send, 403, denial.message)
                return
        await self.app(scope, receive, send)


_CORS_METHODS = b"GET, POST, OPTIONS"
_CORS_EXPOSE = b"inference-header-content-length, content-encoding, content-type"


class OriginMiddleware:
    """CORS for the configured origins; refuses other cross-origin browser requests.

    Browsers send ``Origin`` on cross-origin requests, including simple POSTs that need
    no preflight; without this check any web page could drive a server on localhost
    (the DNS-rebinding and CSRF attacks on Ray's dashboard). ``tritonclient`` and other
    programs send no ``Origin`` and pass untouched. Same-origin requests pass when the
    ``Host`` is an IP address or ``localhost`` (a rebinding attack needs a domain name).
    """

    def __init__(self, app: App, allowed_origins: Sequence[str]) -> None:
        self.app = app
        self.any_origin = "*" in allowed_origins
        self.allowed = frozenset(o.rstrip("/").lower() for o in allowed_origins if o != "*")

    def _allowed(self, origin: str) -> bool:
        return self.any_origin or origin.rstrip("/").lower() in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        values = _header_values(scope)
        origins = values("origin")
        if not origins:
            await self.app(scope, receive, send)
            return
        origin = origins[0]
        if len(origins) != 1 or not (self._allowed(origin) or _same_origin(scope, origin)):
            await _refuse(
                send,
                403,
                "cross-origin request refused: the origin is not allowed "
                "(the server's --http-cors-origin sets the allowed origins)",
            )
            return
        if scope["method"] == "OPTIONS" and values("access-control-request-method"):
            await self._preflight(send, origin, values("access-control-request-headers"))
            return
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", _CORS_EXPOSE),
            (b"vary", b"origin"),
        ]

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, origin: str, requested: list[str]) -> None:
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", _CORS_METHODS),
            (b"access-control-max-age", b"600"),
            (b"vary", b"origin"),
            (b"content-length", b"0"),
        ]
        if requested:
            headers.append((b"access-control-allow-headers", requested[0].encode("latin-1")))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _same_origin(scope: Scope, origin: str) -> bool:
    hosts = _header_values(scope)("host")
    if len(hosts) != 1:
        return False
    host = hosts[0].lower()
    if origin.rstrip("/").lower() != f"{scope.get('scheme', 'http')}://{host}":
        return False
    if host.startswith("["):
        name = host[1 : host.find("]")]
    else:
        name = host.rsplit(":", 1)[0]
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def wrap_app(app: App, policy: AccessPolicy | None, cors_origins: Sequence[str]) -> App:
    """The middleware stack, outermost first: origin check / CORS, then access control.

    CORS answers preflights before access control: browsers send no credentials on them.
    """
    if policy is not None and policy.enabled:
        app = AccessMiddleware(app, policy)
    return OriginMiddleware(app, cors_origins)
