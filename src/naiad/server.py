"""The composition root: builds the core, the backends and the frontends, and runs them.

Start-up loads every model, then opens the gRPC and HTTP listeners; shutdown stops
accepting, lets in-flight requests finish within the exit timeout, then unloads.
Errors that must end the process are raised as :class:`StartupError`; only the CLI
exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import ssl
from pathlib import Path

import grpc
import uvicorn

from naiad.backends.python import bls as python_bls
from naiad.backends.registry import BackendRegistry
from naiad.config.settings import ServerSettings
from naiad.core.loader import LoaderSettings, ModelLoader
from naiad.core.manager import ManagerSettings, ModelControlMode, ModelManager
from naiad.core.scheduling.rate_limiter import RateLimiter
from naiad.core.service import InferenceService
from naiad.core.shared_memory import SharedMemoryRegistry
from naiad.errors import NaiadError
from naiad.observability.log_settings import LogControl
from naiad.observability.runtime import ObservabilityRuntime
from naiad.repository.remote import RepositoryRoots
from naiad.repository.remote_paths import is_remote
from naiad.security.access import AccessPolicy
from naiad.security.settings import exposure_warning
from naiad.security.tls import TlsFiles

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
    def __init__(self, settings: ServerSettings, log_control: LogControl | None = None) -> None:
        """``log_control``: the CLI's logging, changed live by the logging extension."""
        self.settings = settings
        try:
            # Metrics, tracing, live log settings and the dashboard.
            self.observability = ObservabilityRuntime(
                settings.observability, settings.allow_metrics, log_control
            )
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self.metrics_port: int | None = None
        self.rate_limiter = (
            RateLimiter(settings.rate_limit_resources)
            if settings.rate_limit == "execution_count"
            else None
        )
        loader = ModelLoader(
            BackendRegistry(backend_directory=settings.backend_directory),
            LoaderSettings(
                auto_complete_config=settings.auto_complete_config,
                config_name=settings.model_config_name,
                rate_limiter=self.rate_limiter,
            ),
        )
        # s3:// roots are scanned as their local copies, synced in start().
        self._roots = RepositoryRoots(settings.model_repositories, settings.remote_cache_dir)
        self.manager = ModelManager(
            self._roots.local_paths,
            loader,
            ManagerSettings(
                control_mode=ModelControlMode(settings.model_control_mode),
                startup_models=tuple(settings.load_models),
                load_thread_count=settings.model_load_thread_count,
                load_retry_count=settings.model_load_retry_count,
                repository_poll_secs=settings.repository_poll_secs,
            ),
            # Poll mode brings the local copies of remote roots up to date before each scan.
            refresh=self._roots.sync if self._roots.remote else None,
        )
        security = settings.security
        self.service = InferenceService(
            self.manager,
            server_id=settings.server_id,
            strict_readiness=settings.strict_readiness,
            shared_memory=SharedMemoryRegistry(
                enabled=security.allow_client_shm,
                key_prefixes=tuple(security.shm_key_prefixes),
                max_tensor_bytes=settings.grpc_max_message_bytes,
            ),
            max_inflight_requests=security.max_inflight_requests,
            extra_extensions=self.observability.frontends.extensions(),
        )
        # Python models' BLS calls (pb_utils InferenceRequest.exec) go through this service.
        python_bls.set_service(self.service)
        self._grpc_server: grpc.aio.Server | None = None
        self._http_policy = self._grpc_policy = AccessPolicy()
        self._http_tls: TlsFiles | None = None
        self._grpc_tls: TlsFiles | None = None
        self._http_ssl: ssl.SSLContext | None = None
        self._http_server: uvicorn.Server | None = None
        self.http_port: int | None = None
        self.grpc_port: int | None = None

    async def start(self) -> None:
        security = self.settings.security
        try:  # every security flag is checked before anything loads or listens
            self._http_policy, self._grpc_policy = security.http_policy(), security.grpc_policy()
            self._http_tls, self._grpc_tls = security.http_tls(), security.grpc_tls()
            if self._http_tls is not None:
                self._http_ssl = self._http_tls.server_context()
            if self._grpc_tls is not None:
                self._grpc_tls.server_context()  # validates the files
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        for repository in self.settings.model_repositories:
            if not is_remote(repository) and not Path(repository).is_dir():
                raise StartupError(f"failed to stat file {repository}: model repository not found")
        if self._roots.remote:
            try:
                # Downloads block: a thread keeps the event loop (and signals) responsive.
                await asyncio.to_thread(self._roots.sync)
            except NaiadError as exc:
                raise StartupError(str(exc)) from None
        failures = await self.manager.start()
        if failures:
            for failure in failures:
                logger.error("failed to load model %s", failure)
            if self.settings.exit_on_error:
                await self.manager.stop()
                raise StartupError("Internal - failed to load all models: " + "; ".join(failures))
        self.observability.attach(self.service)
        try:
            if self.settings.allow_metrics:
                await self._start_metrics()
            if self.settings.allow_grpc:
                await self._start_grpc()
            if self.settings.allow_http:
                await self._start_http()
        except OSError as exc:
            await self.stop()
            raise StartupError(f"failed to start listener: {exc}") from None
        self.service.mark_started()
        # What start-up built (modules, configs, sessions) lives as long as the server:
        # moving it out of the collector's generations keeps every later collection, which
        # the per-request garbage triggers often, from walking it again.
        gc.freeze()

    async def _start_metrics(self) -> None:
        family, host = parse_address(self.settings.metrics_address)
        port = await self.observability.start_metrics(family, host, self.settings.metrics_port)
        self.metrics_port = port
        self.observability.start_polling()
        logger.info("Started Metrics Service at %s", _format_endpoint(host, port))

    async def _start_grpc(self) -> None:
        # Imported here so a server without gRPC never loads it.
        from naiad.frontends.grpc.access import AccessInterceptor, server_credentials
        from naiad.frontends.grpc.server import add_grpc_services

        limit = self.settings.grpc_max_message_bytes
        # The one access check of every RPC (none configured: no interceptor).
        interceptors = [AccessInterceptor(self._grpc_policy)] if self._grpc_policy.enabled else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_concurrent_streams", self.settings.security.grpc_max_concurrent_streams),
                ("grpc.so_reuseport", 0),
            ],
        )
        add_grpc_services(server, self.service, self.observability.frontends)
        _, host = parse_address(self.settings.grpc_address)
        endpoint = _format_endpoint(host, self.settings.grpc_port)
        try:
            if self._grpc_tls is not None:
                port = server.add_secure_port(endpoint, server_credentials(self._grpc_tls))
            else:
                port = server.add_insecure_port(endpoint)
        except RuntimeError as exc:
            raise OSError(f"unable to bind gRPC to {endpoint}: {exc}") from None
        if port == 0:
            raise OSError(f"unable to bind gRPC to {endpoint}")
        await server.start()
        self._grpc_server = server
        self.grpc_port = port
        logger.info("Started GRPCInferenceService at %s", _format_endpoint(host, port))
        warning = exposure_warning(host, "gRPC", self._grpc_tls, self._grpc_policy)
        if warning:
            logger.warning(warning)

    async def _start_http(self) -> None:
        from naiad.frontends.http.app import HttpSettings, build_http_app
        from naiad.frontends.http.protocol import HttpLimits, limited_protocol

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
                access_policy=self._http_policy,
                cors_origins=tuple(self.settings.security.http_cors_origins),
            ),
            self.observability.frontends,
        )
        limits = HttpLimits(
            max_header_bytes=self.settings.http_max_header_bytes,
            max_chunks=self.settings.http_max_chunks,
            read_timeout_s=self.settings.http_read_timeout_s,
        )
        config = uvicorn.Config(
            app,
            loop="none",
            http=limited_protocol(limits),
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(self.settings.exit_timeout_s) or None,
            timeout_keep_alive=75,
            # Clients' addresses are not used, and the X-Forwarded-* rewriting costs an extra
            # ASGI layer on every request.
            proxy_headers=False,
        )
        config.load()
        config.ssl = self._http_ssl  # None: plain HTTP
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._http_server = server
        self.http_port = sock.getsockname()[1]
        logger.info("Started HTTPService at %s", _format_endpoint(host, self.http_port))
        warning = exposure_warning(host, "HTTP", self._http_tls, self._http_policy)
        if warning:
            logger.warning(warning)

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
        self.service.shared_memory.close()  # closes descriptors; client segments stay
        # After the drain, so the trace file holds the in-flight requests' traces too.
        await self.observability.stop()
        await self.manager.stop()
        logger.info("server stopped")
