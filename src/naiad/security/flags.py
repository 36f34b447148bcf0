"""The ``naiad serve`` flags for access control, TLS, client shared memory and limits.

Kept apart from ``cli.py`` so the security surface is read in one place; ``cli.py``
adds them to the ``serve`` parser and folds the values into ``ServerSettings``.
Triton's names are used where Triton has the flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from naiad.security.settings import (
    DEFAULT_GRPC_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_INFLIGHT_REQUESTS,
    SecuritySettings,
)

BoolFlag = Callable[[argparse.ArgumentParser, str, bool, str], None]


def add_security_flags(serve: argparse.ArgumentParser, bool_flag: BoolFlag) -> None:
    group = serve  # one parser: help lists these after the other serve flags
    bool_flag(group, "--allow-client-shm", False, "allow client shared memory regions")
    group.add_argument(
        "--shm-key-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="shared memory keys clients may register must start with PREFIX (repeatable; "
        "none set: no key is allowed)",
    )
    group.add_argument(
        "--http-restricted-api",
        action="append",
        default=[],
        metavar="APIS:KEY=VALUE",
        help="HTTP API groups that need header KEY with VALUE (repeatable)",
    )
    group.add_argument(
        "--grpc-restricted-protocol",
        action="append",
        default=[],
        metavar="PROTOCOLS:KEY=VALUE",
        help="gRPC groups that need metadata triton-grpc-protocol-KEY with VALUE (repeatable)",
    )
    group.add_argument(
        "--auth-token-file",
        type=Path,
        metavar="PATH",
        help="require 'Authorization: Bearer <token>' with a token from PATH (one per line) "
        "on every route but the liveness and readiness probes",
    )
    group.add_argument("--tls-cert", type=Path, metavar="PEM", help="TLS certificate (HTTP, gRPC)")
    group.add_argument("--tls-key", type=Path, metavar="PEM", help="TLS private key")
    group.add_argument(
        "--tls-client-ca", type=Path, metavar="PEM", help="require client certificates (mTLS)"
    )
    bool_flag(group, "--grpc-use-ssl", False, "gRPC over TLS with the --grpc-server-* files")
    group.add_argument("--grpc-server-cert", type=Path, metavar="PEM")
    group.add_argument("--grpc-server-key", type=Path, metavar="PEM")
    group.add_argument("--grpc-root-cert", type=Path, metavar="PEM")
    bool_flag(group, "--grpc-use-ssl-mutual", False, "gRPC clients need a certificate")
    group.add_argument(
        "--http-cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser origin allowed to call the HTTP API ('*' for any; repeatable); requests "
        "from other origins are refused",
    )
    group.add_argument("--http-max-header-size", type=int, default=64 * 1024, metavar="BYTES")
    group.add_argument(
        "--http-max-chunks",
        type=int,
        default=65536,
        metavar="N",
        help="most non-empty chunks in one chunked HTTP body",
    )
    group.add_argument(
        "--http-read-timeout-secs",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="time to receive one HTTP request, headers and body (0: none)",
    )
    group.add_argument(
        "--max-inflight-requests",
        type=int,
        default=DEFAULT_MAX_INFLIGHT_REQUESTS,
        metavar="N",
        help="inferences in flight at once, both protocols; more get 503/UNAVAILABLE (0: none)",
    )
    group.add_argument(
        "--grpc-max-concurrent-streams",
        type=int,
        default=DEFAULT_GRPC_MAX_CONCURRENT_STREAMS,
        metavar="N",
        help="concurrent gRPC calls on one connection",
    )


def security_from_args(args: argparse.Namespace) -> SecuritySettings:
    return SecuritySettings(
        allow_client_shm=args.allow_client_shm,
        shm_key_prefixes=list(args.shm_key_prefix),
        http_restricted_apis=list(args.http_restricted_api),
        grpc_restricted_protocols=list(args.grpc_restricted_protocol),
        auth_token_file=args.auth_token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        grpc_use_ssl=args.grpc_use_ssl,
        grpc_server_cert=args.grpc_server_cert,
        grpc_server_key=args.grpc_server_key,
        grpc_root_cert=args.grpc_root_cert,
        grpc_use_ssl_mutual=args.grpc_use_ssl_mutual,
        http_cors_origins=list(args.http_cors_origin),
        max_inflight_requests=args.max_inflight_requests,
        grpc_max_concurrent_streams=args.grpc_max_concurrent_streams,
    )
