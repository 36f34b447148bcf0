"""The live dashboard on the HTTP port: ``GET /`` (beyond Triton; ``--allow-dashboard``).

Three static files (HTML, one script, one stylesheet; no build step, nothing fetched from
elsewhere) and ``GET /dashboard/data``, the JSON snapshot the page polls. Every answer
carries a strict Content-Security-Policy: scripts and styles from this origin only, no
inline code, no eval, no framing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

import orjson

from naiad.core.service import InferenceService
from naiad.observability.dashboard.data import snapshot
from naiad.observability.system import SystemMetrics

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_STATIC = {
    "/": ("index.html", b"text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", b"text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", b"text/css; charset=utf-8"),
}
DATA_PATH = "/dashboard/data"


@dataclass(frozen=True, slots=True)
class DashboardResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Dashboard:
    def __init__(self, service: InferenceService, system: SystemMetrics | None) -> None:
        self._service = service
        self._system = system
        self._started = time.monotonic()
        folder = resources.files(__package__).joinpath("static")
        self._files = {
            path: (folder.joinpath(name).read_bytes(), content_type)
            for path, (name, content_type) in _STATIC.items()
        }

    @staticmethod
    def handles(path: str) -> bool:
        return path == "/" or path.startswith("/dashboard/")

    async def handle(self, method: str, path: str) -> DashboardResponse:
        if method not in ("GET", "HEAD"):
            return self._answer(405, b'{"error":"Method Not Allowed"}', b"application/json")
        if path == DATA_PATH:
            data = orjson.dumps(await snapshot(self._service, self._system, self._started))
            answer = self._answer(200, data, b"application/json")
        else:
            static = self._files.get(path)
            if static is None:
                return self._answer(404, b'{"error":"Not Found"}', b"application/json")
            answer = self._answer(200, static[0], static[1])
        if method == "HEAD":
            return DashboardResponse(answer.status, answer.headers, b"")
        return answer

    @staticmethod
    def _answer(status: int, body: bytes, content_type: bytes) -> DashboardResponse:
        headers = [
            (b"content-type", content_type),
            (b"cache-control", b"no-store"),
            *SECURITY_HEADERS,
        ]
        return DashboardResponse(status, headers, body)
