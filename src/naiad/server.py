"""The composition root: builds the core, the backends and the frontends, and runs them.

Start-up loads every model, then opens the gRPC and HTTP listeners; shutdown stops
accepting, lets in-flight requests finish within the exit timeout, then unloads.
Errors that must end the process are raised as :class:`StartupError`; only the CLI
exits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import grpc
import uvicorn

from naiad.backends.registry import BackendRegistry
from naiad.config.settings import ServerSettings
from naiad.core.loader import LoaderSettings, ModelLoader
from naiad.core.manager import ModelManager
from naiad.core.scheduling.rate_limiter import RateLimiter
from naiad.core.service import InferenceService

logger = logging.getLogger("naiad.server")


class StartupError(Exception):
    """The server cannot start; the message says why."""


def parse_address(address: str) -> tuple[socket.AddressFamily, str]:
    """Accept ``127.0.0.1``, ``::1``, ``[::1]`` and Triton's ``ipv6:[::1]``."""
    if address.startswith("ipv6:"):
        address = address[len("ipv6:") :]
    host = address.strip("[]")
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), host


def _format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NaiadServer:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.rate_limiter = (
            RateLimiter(settings.rate_limit_resources)
            if settings.rate_limit == "execution_count"
            else None
        )
        loader = ModelLoader(
            BackendRegistry(),
            LoaderSettings(
                auto_complete_config=settings.auto_complete_config,
                rate_limiter=self.rate_limiter,
            ),
        )
        self.manager = ModelManager(
            list(settings.model_repositories), loader, settings.model_load_thread_count
        )
        self.service = InferenceService(
            self.manager,
            server_id=settings.server_id,
            strict_readiness=settings.strict_readiness,
        )
        self._grpc_server: grpc.aio.Server | None = None
        self._http_server: uvicorn.Server | None = None
        self.http_port: int | None = None
        self.grpc_port: int | None = None

    async def start(self) -> None:
        for repository in self.settings.model_repositories:
            if not Path(repository).is_dir():
                raise StartupError(f"failed to stat file {repository}: model repository not found")
        failures = await self.manager.load_all()
        if failures:
            for failure in failures:
                logger.error("failed to load model %s", failure)
            if self.settings.exit_on_error:
                self.manager.unload_all()
                raise StartupError("Internal - failed to load all models: " + "; ".join(failures))
        try:
            if self.settings.allow_grpc:
                await self._start_grpc()
            if self.settings.allow_http:
                await self._start_http()
        except OSError as exc:
            await self.stop()
            raise StartupError(f"failed to start listener: {exc}") from None
        self.service.mark_started()

    async def _start_grpc(self) -> None:
        # Imported here so a server without gRPC never loads it.
        from naiad.frontends.grpc.server import add_grpc_services

        limit = self.settings.grpc_max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
                ("grpc.so_reuseport", 0),
            ]
        )
        add_grpc_services(server, self.service)
        _, host = parse_address(self.settings.grpc_address)
        endpoint = _format_endpoint(host, self.settings.grpc_port)
        try:
            port = server.add_insecure_port(endpoint)
        except RuntimeError as exc:
            raise OSError(f"unable to bind gRPC to {endpoint}: {exc}") from None
        if port == 0:
            raise OSError(f"unable to bind gRPC to {endpoint}")
        await server.start()
        self._grpc_server = server
        self.grpc_port = port
        logger.info("Started GRPCInferenceService at %s", _format_endpoint(host, port))

    async def _start_http(self) -> None:
        from naiad.frontends.http.app import HttpSettings, build_http_app

        family, host = parse_address(self.settings.http_address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, self.settings.http_port))
        except OSError:
            sock.close()
            raise
        sock.listen(2048)
        sock.setblocking(False)
        app = build_http_app(
            self.service,
            HttpSettings(
                max_input_size_bytes=self.settings.http_max_input_size_bytes,
                max_json_depth=self.settings.http_max_json_depth,
            ),
        )
        config = uvicorn.Config(
            app,
            loop="none",
            http="httptools",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(self.settings.exit_timeout_s) or None,
            timeout_keep_alive=75,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._http_server = server
        self.http_port = sock.getsockname()[1]
        logger.info("Started HTTPService at %s", _format_endpoint(host, self.http_port))

    async def stop(self) -> None:
        """Refuse new work, finish in-flight requests (bounded by the exit timeout), unload."""
        timeout_s = self.settings.exit_timeout_s
        self.service.begin_shutdown()
        tasks = []
        if self._grpc_server is not None:
            tasks.append(self._grpc_server.stop(grace=timeout_s))
        if self._http_server is not None:
            tasks.append(self._http_server.shutdown())
        tasks.append(self.service.drain(timeout_s))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                logger.warning("error while stopping: %s", result)
        if self.service.in_flight:
            logger.warning(
                "exit timeout of %ss reached with %d inferences in flight",
                timeout_s,
                self.service.in_flight,
            )
        self.manager.unload_all()
        logger.info("server stopped")
