"""Server settings, one typed value per command-line flag (names as ``tritonserver``'s)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HTTP_MAX_INPUT_SIZE_BYTES = 64 * 1024 * 1024  # Triton's default (1 << 26)
DEFAULT_GRPC_MAX_MESSAGE_BYTES = 2**31 - 1  # tritonclient itself sends up to INT32_MAX
DEFAULT_EXIT_TIMEOUT_S = 30


@dataclass(slots=True)
class ServerSettings:
    model_repositories: list[Path] = field(default_factory=list)
    server_id: str = "naiad"
    allow_http: bool = True
    http_address: str = "127.0.0.1"
    http_port: int = 8000
    http_max_input_size_bytes: int = DEFAULT_HTTP_MAX_INPUT_SIZE_BYTES
    allow_grpc: bool = True
    grpc_address: str = "127.0.0.1"
    grpc_port: int = 8001
    grpc_max_message_bytes: int = DEFAULT_GRPC_MAX_MESSAGE_BYTES
    allow_metrics: bool = True
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 8002
    strict_readiness: bool = True
    exit_on_error: bool = True
    exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S
    log_verbose: int = 0
    auto_complete_config: bool = True
    model_load_thread_count: int = 4
    # --rate-limit=execution_count turns the rate limiter on; resources name -> count.
    rate_limit: str = "off"
    rate_limit_resources: dict[str, int] = field(default_factory=dict)
    # JSON nesting allowed in HTTP request bodies (Triton: HTTP_MAX_JSON_NESTING_DEPTH).
    http_max_json_depth: int = 100
