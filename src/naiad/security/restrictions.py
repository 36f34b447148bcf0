"""Triton's restricted API groups and the ``<apis>:<key>=<value>`` flags that set them.

``--http-restricted-api`` and ``--grpc-restricted-protocol`` name groups of endpoints
(``server/src/restricted_features.h``) that answer only when a request carries a header
with the configured value. HTTP checks the header ``<key>``; gRPC checks the metadata key
``triton-grpc-protocol-<key>``. Each group may be restricted by one flag only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

# gRPC metadata keys must be lowercase, so Triton prefixes the key with this.
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"


class ApiGroup(enum.Enum):
    """Triton's ``RestrictedCategory``, with the names its flags use."""

    HEALTH = "health"
    METADATA = "metadata"
    INFERENCE = "inference"
    SHARED_MEMORY = "shared-memory"
    MODEL_CONFIG = "model-config"
    MODEL_REPOSITORY = "model-repository"
    STATISTICS = "statistics"
    TRACE = "trace"
    LOGGING = "logging"


@dataclass(frozen=True, slots=True)
class Restriction:
    """A header (lowercase) and the value a request must send in it."""

    header: str
    value: str


class RestrictionSpecError(ValueError):
    """A restricted-API flag is malformed; the message says how."""


def parse_restrictions(
    specs: Iterable[str], header_prefix: str = ""
) -> dict[ApiGroup, Restriction]:
    """Parse repeated ``<api>[,<api>...]:<key>=<value>`` flags into one mapping.

    ``header_prefix`` is ``""`` for HTTP and :data:`GRPC_HEADER_PREFIX` for gRPC.
    """
    restrictions: dict[ApiGroup, Restriction] = {}
    for spec in specs:
        apis, sep, key_value = spec.partition(":")
        key, sep2, value = key_value.partition("=")
        if not sep or not sep2 or not apis or not key:
            raise RestrictionSpecError(
                f"restricted api specification '{spec}' must have the form "
                "<api>[,<api>...]:<key>=<value>"
            )
        # Header names are case-insensitive in HTTP and lowercase in gRPC metadata.
        restriction = Restriction(header_prefix + key.strip().lower(), value)
        for name in apis.split(","):
            name = name.strip()
            try:
                group = ApiGroup(name)
            except ValueError:
                raise RestrictionSpecError(f"unknown restricted api '{name}'") from None
            if group in restrictions:
                raise RestrictionSpecError(
                    f"restricted api '{name}' can not be specified in multiple config groups"
                )
            restrictions[group] = restriction
    return restrictions
