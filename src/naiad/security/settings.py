"""Security flags of ``naiad serve`` as one typed value, and what the server builds from them.

Everything here is checked at start-up: a malformed restriction, an unreadable token
file or TLS file stops the server with a message, never a silently open endpoint.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from naiad.security.access import AccessPolicy, read_token_file
from naiad.security.restrictions import GRPC_HEADER_PREFIX, parse_restrictions
from naiad.security.tls import TlsConfigError, TlsFiles

DEFAULT_MAX_INFLIGHT_REQUESTS = 1024
DEFAULT_GRPC_MAX_CONCURRENT_STREAMS = 1024


@dataclass(slots=True)
class SecuritySettings:
    # Client shared memory: off unless --allow-client-shm; keys need an allowed prefix.
    allow_client_shm: bool = False
    shm_key_prefixes: list[str] = field(default_factory=list)
    # Triton's <apis>:<key>=<value> restrictions, per frontend.
    http_restricted_apis: list[str] = field(default_factory=list)
    grpc_restricted_protocols: list[str] = field(default_factory=list)
    auth_token_file: Path | None = None
    # TLS for both listeners (--tls-*), and Triton's gRPC-only flags that override it.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    grpc_use_ssl: bool = False
    grpc_server_cert: Path | None = None
    grpc_server_key: Path | None = None
    grpc_root_cert: Path | None = None
    grpc_use_ssl_mutual: bool = False
    http_cors_origins: list[str] = field(default_factory=list)
    max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS
    grpc_max_concurrent_streams: int = DEFAULT_GRPC_MAX_CONCURRENT_STREAMS

    def _tokens(self) -> tuple[str, ...]:
        return read_token_file(self.auth_token_file) if self.auth_token_file else ()

    def http_policy(self) -> AccessPolicy:
        return AccessPolicy(parse_restrictions(self.http_restricted_apis), self._tokens(), "API")

    def grpc_policy(self) -> AccessPolicy:
        restrictions = parse_restrictions(self.grpc_restricted_protocols, GRPC_HEADER_PREFIX)
        return AccessPolicy(restrictions, self._tokens(), "protocol")

    def http_tls(self) -> TlsFiles | None:
        if self.tls_cert is None and self.tls_key is None:
            if self.tls_client_ca is not None:
                raise TlsConfigError("--tls-client-ca needs --tls-cert and --tls-key")
            return None
        if self.tls_cert is None or self.tls_key is None:
            raise TlsConfigError("TLS needs both --tls-cert and --tls-key")
        return TlsFiles(self.tls_cert, self.tls_key, self.tls_client_ca)

    def grpc_tls(self) -> TlsFiles | None:
        """Triton's --grpc-use-ssl flags when given, else the shared --tls-* files."""
        if not self.grpc_use_ssl:
            if self.grpc_use_ssl_mutual:
                raise TlsConfigError("--grpc-use-ssl-mutual needs --grpc-use-ssl")
            return self.http_tls()
        if self.grpc_server_cert is None or self.grpc_server_key is None:
            raise TlsConfigError("--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key")
        if self.grpc_use_ssl_mutual and self.grpc_root_cert is None:
            raise TlsConfigError("--grpc-use-ssl-mutual needs --grpc-root-cert")
        return TlsFiles(
            self.grpc_server_cert,
            self.grpc_server_key,
            self.grpc_root_cert if self.grpc_use_ssl_mutual else None,
        )


def exposure_warning(
    host: str, protocol: str, tls: TlsFiles | None, policy: AccessPolicy
) -> str | None:
    """A warning for a listener reachable beyond this host with no TLS or no access check."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    missing = [
        what
        for what, absent in (("TLS", tls is None), ("access control", not policy.enabled))
        if absent
    ]
    if loopback or not missing:
        return None
    return (
        f"{protocol} listens on {host} without {' or '.join(missing)}: anyone who can reach "
        "the port can use every API of this server (see SECURITY.md)"
    )
