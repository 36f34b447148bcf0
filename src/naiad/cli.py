"""Command line: ``naiad serve`` with ``tritonserver``'s flag names, and the only ``exit``.

Boolean flags take ``--flag``, ``--flag=true|false`` or ``--flag true|false`` (also
1/0, yes/no, on/off), so existing ``tritonserver`` launch scripts keep working.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

# First of Naiad's imports: it sets gRPC core's environment before grpc loads.
from naiad import grpc_environment  # noqa: F401  # isort: skip
from naiad import __version__
from naiad.config.settings import (
    DEFAULT_EXIT_TIMEOUT_S,
    DEFAULT_GRPC_MAX_MESSAGE_BYTES,
    DEFAULT_HTTP_MAX_INPUT_SIZE_BYTES,
    ServerSettings,
)
from naiad.errors import NaiadError
from naiad.observability.flags import add_observability_flags, observability_from_args
from naiad.observability.log_settings import LogControl
from naiad.repository.remote_paths import is_remote, parse_remote
from naiad.security.flags import add_security_flags, security_from_args

logger = logging.getLogger("naiad.cli")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def parse_resource(text: str) -> tuple[str, int]:
    """``name:count[:device]``; devices are accepted and pooled, as on a CPU-only host."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME:COUNT[:DEVICE], got '{text}'")
    return parts[0], int(parts[1])


def parse_repository(text: str) -> str:
    """A local path as given, or a remote address checked now (kept a string: ``Path``
    would turn ``s3://b`` into ``s3:/b``)."""
    if is_remote(text):
        try:
            parse_remote(text)
        except NaiadError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _bool_flag(parser: argparse.ArgumentParser, flag: str, default: bool, help_text: str) -> None:
    parser.add_argument(
        flag,
        type=parse_bool,
        nargs="?",
        const=True,
        default=default,
        metavar="BOOL",
        help=f"{help_text} (default: {str(default).lower()})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="naiad", description="Naiad inference server")
    parser.add_argument("--version", action="version", version=f"naiad {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve a Triton model repository over HTTP and gRPC",
        description="Serve Triton model repositories. With no --model-repository, serves the "
        "bundled example repository.",
    )
    serve.add_argument(
        "--model-repository",
        "--model-store",
        dest="model_repository",
        action="append",
        type=parse_repository,
        default=[],
        metavar="PATH",
        help="model repository: a directory, or s3://[host:port/]bucket/path (repeatable)",
    )
    serve.add_argument(
        "--remote-cache-dir",
        type=Path,
        default=None,
        metavar="PATH",
        help="where local copies of s3:// repositories are kept between runs (default: "
        "$TRITON_AWS_MOUNT_DIRECTORY, else $XDG_CACHE_HOME/naiad/remote)",
    )
    serve.add_argument("--id", dest="server_id", default="naiad", help="server name in metadata")
    _bool_flag(serve, "--allow-http", True, "serve HTTP/REST")
    serve.add_argument("--http-address", default="127.0.0.1", help="HTTP bind address")
    serve.add_argument("--http-port", type=int, default=8000, help="HTTP port (0: any free port)")
    serve.add_argument(
        "--http-max-input-size",
        type=int,
        default=DEFAULT_HTTP_MAX_INPUT_SIZE_BYTES,
        metavar="BYTES",
        help="largest HTTP request body, also after decompression",
    )
    _bool_flag(serve, "--allow-grpc", True, "serve gRPC")
    serve.add_argument("--grpc-address", default="127.0.0.1", help="gRPC bind address")
    serve.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (0: any free port)")
    serve.add_argument(
        "--grpc-max-message-size",
        type=int,
        default=DEFAULT_GRPC_MAX_MESSAGE_BYTES,
        metavar="BYTES",
        help="largest gRPC message sent or received",
    )
    _bool_flag(serve, "--allow-metrics", True, "serve Prometheus metrics")
    serve.add_argument("--metrics-address", default="127.0.0.1", help="metrics bind address")
    serve.add_argument("--metrics-port", type=int, default=8002, help="metrics port")
    _bool_flag(serve, "--strict-readiness", True, "ready only when every model is ready")
    _bool_flag(serve, "--exit-on-error", True, "exit when a model fails to load at start-up")
    serve.add_argument(
        "--exit-timeout-secs",
        type=float,
        default=DEFAULT_EXIT_TIMEOUT_S,
        metavar="SECONDS",
        help="on shutdown, how long in-flight requests may take to finish",
    )
    serve.add_argument("--log-verbose", type=int, default=0, metavar="LEVEL")
    serve.add_argument(
        "--disable-auto-complete-config",
        action="store_true",
        help="do not complete model configs from the model files",
    )
    serve.add_argument("--model-load-thread-count", type=int, default=4, metavar="N")
    serve.add_argument(
        "--backend-directory",
        type=Path,
        default=None,
        metavar="PATH",
        help="directory of python-based backends, as <PATH>/<backend name>/model.py",
    )
    serve.add_argument(
        "--model-load-retry-count",
        type=int,
        default=0,
        metavar="N",
        help="retries of a model load that failed",
    )
    serve.add_argument(
        "--model-control-mode",
        choices=("none", "poll", "explicit"),
        default="none",
        type=str.lower,
        help="none: load at start only; poll: follow repository changes; "
        "explicit: load and unload through the repository API",
    )
    serve.add_argument(
        "--load-model",
        action="append",
        default=[],
        metavar="NAME",
        help="explicit mode: a model to load at start-up ('*' for all; repeatable)",
    )
    serve.add_argument(
        "--repository-poll-secs",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="poll mode: seconds between repository scans",
    )
    serve.add_argument(
        "--model-config-name",
        default="",
        metavar="NAME",
        help="use configs/NAME.pbtxt of each model where present, else config.pbtxt",
    )
    serve.add_argument(
        "--rate-limit",
        choices=("off", "execution_count"),
        default="off",
        help="execution_count: instances run only while holding their rate-limiter resources",
    )
    serve.add_argument(
        "--rate-limit-resource",
        action="append",
        type=parse_resource,
        default=[],
        metavar="NAME:COUNT[:DEVICE]",
        help="count of a rate-limiter resource (repeatable)",
    )
    add_security_flags(serve, _bool_flag)
    add_observability_flags(serve, _bool_flag)

    example = commands.add_parser(
        "example-repository", help="write the bundled example model repository to a directory"
    )
    example.add_argument("path", type=Path)
    return parser


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        model_repositories=list(args.model_repository),
        remote_cache_dir=args.remote_cache_dir,
        server_id=args.server_id,
        allow_http=args.allow_http,
        http_address=args.http_address,
        http_port=args.http_port,
        http_max_input_size_bytes=args.http_max_input_size,
        allow_grpc=args.allow_grpc,
        grpc_address=args.grpc_address,
        grpc_port=args.grpc_port,
        grpc_max_message_bytes=args.grpc_max_message_size,
        allow_metrics=args.allow_metrics,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        strict_readiness=args.strict_readiness,
        exit_on_error=args.exit_on_error,
        exit_timeout_s=args.exit_timeout_secs,
        log_verbose=args.log_verbose,
        auto_complete_config=not args.disable_auto_complete_config,
        model_load_thread_count=args.model_load_thread_count,
        backend_directory=args.backend_directory,
        model_load_retry_count=args.model_load_retry_count,
        model_control_mode=args.model_control_mode,
        load_models=list(args.load_model),
        repository_poll_secs=args.repository_poll_secs,
        model_config_name=args.model_config_name,
        rate_limit=args.rate_limit,
        rate_limit_resources=dict(args.rate_limit_resource),
        http_max_header_bytes=args.http_max_header_size,
        http_max_chunks=args.http_max_chunks,
        http_read_timeout_s=args.http_read_timeout_secs,
        security=security_from_args(args),
        observability=observability_from_args(args),
    )


async def _serve(settings: ServerSettings, log_control: LogControl | None = None) -> int:
    from naiad.server import NaiadServer, StartupError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        server = NaiadServer(settings, log_control)
        await server.start()
    except StartupError as exc:
        print(f"error: creating server: {exc}", file=sys.stderr)
        return 1
    await stop.wait()
    logger.info("signal received: stopping, waiting for in-flight requests")
    await server.stop()
    return 0


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "example-repository":
        from naiad.examples.repository import write_example_repository

        write_example_repository(args.path)
        print(f"wrote the example model repository to {args.path}")
        return 0
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        # The logging extension changes these settings while the server runs.
        log_control = LogControl(settings.observability.logs)
    except OSError as exc:
        print(f"error: cannot open --log-file: {exc}", file=sys.stderr)
        return 1
    if not settings.model_repositories:
        from naiad.examples.repository import example_repository

        settings.model_repositories = [str(example_repository())]
        logger.info(
            "no --model-repository given: serving the example repository at %s",
            settings.model_repositories[0],
        )
    return _run(_serve(settings, log_control))


if __name__ == "__main__":
    sys.exit(main())
