"""Server settings, one typed value per command-line flag (names as ``tritonserver``'s)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from naiad.observability.settings import ObservabilitySettings
from naiad.security.settings import SecuritySettings

DEFAULT_HTTP_MAX_INPUT_SIZE_BYTES = 64 * 1024 * 1024  # Triton's default (1 << 26)
DEFAULT_GRPC_MAX_MESSAGE_BYTES = 2**31 - 1  # tritonclient itself sends up to INT32_MAX
DEFAULT_EXIT_TIMEOUT_S = 30


@dataclass(slots=True)
class ServerSettings:
    # Directories or remote addresses (s3://...), kept as given: Path would mangle "//".
    model_repositories: list[str] = field(default_factory=list)
    # --remote-cache-dir: local copies of remote repositories (None: the default place).
    remote_cache_dir: Path | None = None
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
    # --backend-directory: python-based backends as <dir>/<backend name>/model.py.
    backend_directory: Path | None = None
    model_load_retry_count: int = 0
    model_control_mode: str = "none"
    # Explicit mode: models loaded at start-up ("*" for all).
    load_models: list[str] = field(default_factory=list)
    repository_poll_secs: float = 15.0
    # --model-config-name: configs/<name>.pbtxt instead of config.pbtxt where present.
    model_config_name: str = ""
    # --rate-limit=execution_count turns the rate limiter on; resources name -> count.
    rate_limit: str = "off"
    rate_limit_resources: dict[str, int] = field(default_factory=dict)
    # JSON nesting allowed in HTTP request bodies (Triton: HTTP_MAX_JSON_NESTING_DEPTH).
    http_max_json_depth: int = 100
    # Limits the HTTP protocol layer enforces (frontends/http/protocol.py).
    http_max_header_bytes: int = 64 * 1024
    http_max_chunks: int = 65536  # Triton's cap on non-empty chunks of one body
    http_read_timeout_s: float = 60.0
    # Access control, TLS, client shared memory, in-flight caps (SECURITY.md).
    security: SecuritySettings = field(default_factory=SecuritySettings)
    # --metrics-config, --trace-config, the log flags, --allow-dashboard.
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
