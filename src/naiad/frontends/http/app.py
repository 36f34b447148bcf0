"""The HTTP/REST frontend as a plain ASGI application (served by uvicorn with httptools).

Routes are Triton's (``server/src/http_server.cc``), matched on the path before the
query string. Each handler only translates between HTTP and the core service; every
error becomes ``{"error": "..."}`` with Triton's status for its kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from naiad.config.model_config import config_to_json_dict, message_to_json_dict
from naiad.core.service import InferenceService
from naiad.errors import InvalidArgumentError, NaiadError, NotFoundError, UnsupportedError
from naiad.frontends.http.access import App, wrap_app
from naiad.frontends.http.body import (
    UnsupportedEncodingError,
    choose_response_encoding,
    compress,
    decompress,
    read_body,
)
from naiad.frontends.http.codec import (
    decode_infer_request,
    decode_load_parameters,
    decode_raw_request,
    encode_infer_response,
    parse_json,
)
from naiad.frontends.http.errors import http_status
from naiad.frontends.http.observability_routes import log_settings, start_trace, trace_setting
from naiad.frontends.http.protocol import CANCELLED_KEY, TASK_KEY
from naiad.frontends.http.streaming import SSE_HEADERS, generate, infer_events, send_stream
from naiad.frontends.statistics import statistics_message
from naiad.inference import InferenceRequest, InferenceResponse
from naiad.observability.trace_context import CURRENT_TRACE
from naiad.security.access import AccessPolicy

if TYPE_CHECKING:
    from naiad.observability.runtime import Observability

logger = logging.getLogger("naiad.http")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_MODEL_ROUTE = re.compile(
    r"^/v2/models/([^/]+)(?:/versions/([0-9]+))?"
    r"(?:/(infer|generate|generate_stream|ready|config|stats|trace/setting))?$"
)
_REPOSITORY_ROUTE = re.compile(
    r"^/v2/repository(?:/([^/]+))?/(index|models/([^/]+)/(load|unload))$"
)
_SHM_ROUTE = re.compile(
    r"^/v2/(system|cuda)sharedmemory(?:/region/([^/]+))?/(status|register|unregister)$"
)
_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    max_input_size_bytes: int = 64 * 1024 * 1024
    max_json_depth: int = 100
    # Bearer tokens and restricted API groups (None: every route is open).
    access_policy: AccessPolicy | None = None
    # Browser origins allowed to call the API (--http-cors-origin); none by default.
    cors_origins: tuple[str, ...] = ()


class HttpError(Exception):
    """A transport-level refusal (404/405) that has no core error kind."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Response:
    __slots__ = ("body", "headers", "status", "stream")

    def __init__(
        self,
        status: int = 200,
        body: list[bytes | memoryview] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        stream: AsyncIterator[bytes] | None = None,
    ) -> None:
        self.status = status
        self.body = body or []
        self.headers = headers or []
        # Server-sent events: chunks sent as they come, without a content-length.
        self.stream = stream


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, [orjson.dumps(value)], [_JSON])


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class HttpApp:
    def __init__(
        self,
        service: InferenceService,
        settings: HttpSettings,
        observability: Observability | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        # Tracer, log settings and dashboard; None answers those routes as unavailable.
        self.observability = observability
        self._dashboard = observability.dashboard if observability is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            response = await self._dispatch(scope, receive)
        except asyncio.CancelledError:
            if not scope.get(CANCELLED_KEY):
                raise
            # The client dropped the connection mid-inference (protocol.py cancelled
            # us): nobody is left to answer.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return
        except NaiadError as exc:
            response = json_response({"error": exc.message}, http_status(exc.code))
            if isinstance(exc, UnsupportedEncodingError):
                response.headers.append((b"accept-encoding", b"gzip, deflate"))
        except HttpError as exc:
            response = json_response({"error": exc.message}, exc.status)
        except Exception as exc:  # never let one bad request take the connection down silently
            logger.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            response = json_response({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)
        trace = CURRENT_TRACE.get()  # set by _infer when the tracer sampled this request
        if trace is None:
            await self._send(send, response)
            return
        trace.stamp("HTTP_SEND_START")
        await self._send(send, response)
        trace.stamp("HTTP_SEND_END")
        CURRENT_TRACE.set(None)
        trace.finish()

    async def _send(self, send: Send, response: Response) -> None:
        if response.stream is not None:
            await send_stream(send, response.status, response.headers, response.stream)
            return
        length = sum(len(part) for part in response.body)
        headers = [*response.headers, (b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        parts = response.body
        if len(parts) <= 1 or length < 65536:
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            await send(
                {
                    "type": "http.response.body",
                    "body": bytes(body) if isinstance(body, memoryview) else body,
                }
            )
            return
        for index, part in enumerate(parts):
            await send(
                {
                    "type": "http.response.body",
                    "body": bytes(part),
                    "more_body": index < len(parts) - 1,
                }
            )

    async def _dispatch(self, scope: Scope, receive: Receive) -> Response:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/v2/models/stats":  # before the model route, which would take "stats"
            _require(method, "GET")
            return self._statistics("", "")
        match = _MODEL_ROUTE.match(path)
        if match:
            name, version, action = match.group(1), match.group(2) or "", match.group(3)
            if action == "infer":
                _require(method, "POST")
                return await self._infer(scope, receive, name, version)
            if action is None:
                _require(method, "GET")
                return self._model_metadata(name, version)
            if action == "ready":
                _require(method, "GET")
                if self.service.model_ready(name, version):
                    return Response(200)
                return json_response({"error": "Model version not ready"}, 400)
            if action == "config":
                _require(method, "GET")
                config = self.service.model_config(name, version)
                return json_response(config_to_json_dict(config))
            if action == "stats":
                _require(method, "GET")
                return self._statistics(name, version)
            if action == "trace/setting":
                _require(method, "GET", "POST")
                body = await self._json_body(scope, receive) if method == "POST" else None
                return json_response(trace_setting(self.observability, self.service, name, body))
            _require(method, "POST")  # generate, generate_stream
            body = await self._json_body(scope, receive)
            result = await generate(self.service, name, version, body, action == "generate_stream")
            if isinstance(result, dict):
                return json_response(result)
            return Response(200, headers=list(SSE_HEADERS), stream=result)
        if path == "/v2":
            _require(method, "GET")
            meta = self.service.server_metadata()
            return json_response(
                {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}
            )
        if path in ("/v2/health/live", "/v2/health/ready"):
            _require(method, "GET")
            ok = (
                self.service.server_live() if path.endswith("live") else self.service.server_ready()
            )
            return Response(200 if ok else 400)
        match = _REPOSITORY_ROUTE.match(path)
        if match:
            _require(method, "POST")
            return await self._repository(scope, receive, match)
        match = _SHM_ROUTE.match(path)
        if match:
            return await self._shared_memory(scope, receive, method, match)
        if path in ("/v2/logging", "/v2/trace/setting"):
            _require(method, "GET", "POST")
            body = await self._json_body(scope, receive) if method == "POST" else None
            if path == "/v2/logging":
                return json_response(log_settings(self.observability, body))
            return json_response(trace_setting(self.observability, self.service, "", body))
        if self._dashboard is not None and self._dashboard.handles(path):
            answer = await self._dashboard.handle(method, path)
            return Response(answer.status, [answer.body], answer.headers)
        raise HttpError(404, "Not Found")

    async def _json_body(self, scope: Scope, receive: Receive) -> Any:
        body = await self._read(scope, receive)
        return parse_json(body, self.settings.max_json_depth) if body.strip() else {}

    @contextlib.contextmanager
    def _counting_rejects(self, name: str, version: str) -> Iterator[None]:
        """A request refused before it reaches the model still counts as its failure."""
        try:
            yield
        except NaiadError:
            self.service.record_rejected(name, version)
            raise

    # -- handlers -----------------------------------------------------------------

    def _model_metadata(self, name: str, version: str) -> Response:
        meta = self.service.model_metadata(name, version)
        return json_response(
            {
                "name": meta.name,
                "versions": meta.versions,
                "platform": meta.platform,
                "inputs": [
                    {"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in meta.inputs
                ],
                "outputs": [
                    {"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in meta.outputs
                ],
            }
        )

    def _statistics(self, name: str, version: str) -> Response:
        message = statistics_message(self.service.model_statistics(name, version))
        return json_response(message_to_json_dict(message))

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_input_size_bytes
        length_header = _header(scope, b"content-length")
        content_length = int(length_header) if length_header and length_header.isdigit() else None
        body = await read_body(receive, content_length, limit)
        encoding = _header(scope, b"content-encoding")
        return decompress(body, encoding, limit) if encoding else body

    async def _infer(self, scope: Scope, receive: Receive, name: str, version: str) -> Response:
        # Triton looks the model up before reading the body: unknown models fail first.
        if self.service.manager.get(name, version).decoupled:
            if b"text/event-stream" in (_header(scope, b"accept") or "").encode():
                body = await self._read(scope, receive)
                with self.service.shared_memory.session() as shm:
                    request, _ = decode_infer_request(
                        name, version, body, None, self.settings.max_json_depth, shm
                    )
                events = await infer_events(self.service, request)
                return Response(200, headers=list(SSE_HEADERS), stream=events)
            raise UnsupportedError(
                "HTTP end point doesn't support models with decoupled transaction policy"
            )
        trace = start_trace(self.observability, scope, name)
        with self._counting_rejects(name, version):
            body = await self._read(scope, receive)
            if trace is not None:
                trace.stamp("HTTP_RECV_END")
            header_value = _header(scope, b"inference-header-content-length")
            header_length: int | None = None
            if header_value is not None:
                try:
                    header_length = int(header_value.strip())
                except ValueError:
                    header_length = 0  # Triton reads it with atoi: junk means 0, a raw body
                if header_length < 0:
                    raise _header_range_error(len(body), header_value)
        if header_length == 0:
            with self._counting_rejects(name, version):
                request = decode_raw_request(
                    name, version, body, self.service.model_metadata(name, version)
                )
            binary_default = True
            response = await self._cancellable_infer(scope, request)
            parts, json_length = encode_infer_response(response, binary_default)
        else:
            # The session holds the shared memory regions the request names until its
            # outputs are written (an unregister meanwhile waits for it).
            with self.service.shared_memory.session() as shm:
                with self._counting_rejects(name, version):
                    request, binary_default = decode_infer_request(
                        name, version, body, header_length, self.settings.max_json_depth, shm
                    )
                response = await self._cancellable_infer(scope, request)
                parts, json_length = encode_infer_response(response, binary_default, shm)
        headers: list[tuple[bytes, bytes]] = []
        if json_length is None:
            headers.append(_JSON)
        else:
            headers.append((b"content-type", b"application/octet-stream"))
            headers.append((b"inference-header-content-length", str(json_length).encode()))
        accept = _header(scope, b"accept-encoding")
        encoding = choose_response_encoding(accept) if accept else ""
        if encoding:
            parts = [compress(parts, encoding)]
            headers.append((b"content-encoding", encoding.encode()))
        return Response(200, parts, headers)

    async def _cancellable_infer(
        self, scope: Scope, request: InferenceRequest
    ) -> InferenceResponse:
        """``service.infer``, cancelled should the client drop the connection meanwhile."""
        scope[TASK_KEY] = asyncio.current_task()
        try:
            return await self.service.infer(request)
        finally:
            del scope[TASK_KEY]

    async def _repository(self, scope: Scope, receive: Receive, match: re.Match[str]) -> Response:
        if match.group(1) is not None:
            raise UnsupportedError("'repository_name' specification is not supported")
        body = await self._read(scope, receive)
        doc = parse_json(body, self.settings.max_json_depth) if body.strip() else {}
        if match.group(2) == "index":
            ready = doc.get("ready", False)
            if not isinstance(ready, bool):
                raise InvalidArgumentError("Unable to parse 'ready': expected a boolean")
            entries = []
            for entry in await self.service.repository_index(ready):
                item: dict[str, str] = {"name": entry.name}
                if entry.version:
                    item["version"] = entry.version
                if entry.state:
                    item["state"] = entry.state
                if entry.reason:
                    item["reason"] = entry.reason
                entries.append(item)
            return json_response(entries)
        name, action = match.group(3), match.group(4)
        parameters = doc.get("parameters", {})
        if not isinstance(parameters, dict):
            raise InvalidArgumentError("Unable to parse 'parameters': expected an object")
        if action == "unload":
            unload_dependents = parameters.get("unload_dependents", False)
            if not isinstance(unload_dependents, bool):
                raise InvalidArgumentError(
                    "Unable to parse 'unload_dependents': expected a boolean"
                )
            await self.service.unload_model(name, unload_dependents)
            return Response(200)
        config, files = decode_load_parameters(parameters)
        await self.service.load_model(name, config, files)
        return Response(200)

    async def _shared_memory(
        self, scope: Scope, receive: Receive, method: str, match: re.Match[str]
    ) -> Response:
        from naiad.frontends.http import shared_memory as routes

        system, region, action = match.group(1) == "system", match.group(2) or "", match.group(3)
        registry = self.service.shared_memory
        if action == "status":
            _require(method, "GET")
            status = (
                routes.system_status(registry, region) if system else routes.cuda_status(region)
            )
            return json_response(status)
        _require(method, "POST")
        if action == "unregister":
            if system:
                registry.unregister(region)
            return Response(200)
        body = await self._read(scope, receive)
        doc = parse_json(body, self.settings.max_json_depth) if body.strip() else {}
        if system:
            routes.register_system(registry, region, doc)
        else:
            routes.register_cuda(region)
        return Response(200)


def _require(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise HttpError(405, "Method Not Allowed")


def _header_range_error(body_length: int, value: str) -> NaiadError:
    from naiad.errors import InvalidArgumentError

    return InvalidArgumentError(
        f"inference header size should be in range (0, {body_length}), got: {value}"
    )


def build_http_app(
    service: InferenceService,
    settings: HttpSettings,
    observability: Observability | None = None,
) -> App:
    """The app inside its middleware: origin check and CORS, then access control.

    Every request passes the one access check in :mod:`.access` before any route runs.
    """
    app = HttpApp(service, settings, observability)
    return wrap_app(app, settings.access_policy, settings.cors_origins)


__all__ = ["HttpApp", "HttpSettings", "NotFoundError", "build_http_app"]
