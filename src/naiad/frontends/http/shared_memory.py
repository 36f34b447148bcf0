"""HTTP routes of the shared memory extensions (``/v2/systemsharedmemory``, ``/v2/cudasharedmemory``).

The registry lives in the core (:mod:`naiad.core.shared_memory`); this module only
parses the register body with Triton's error texts and renders the status array.
CUDA shared memory needs a GPU: registering answers UNSUPPORTED, while status and
unregister succeed, because clients call them before anything else.
"""

from __future__ import annotations

from typing import Any

from naiad.core.shared_memory import DISABLED_MESSAGE, SharedMemoryRegistry
from naiad.errors import InvalidArgumentError, NotFoundError, UnsupportedError


def _unsigned(doc: dict[str, Any], key: str, required: bool) -> int:
    if key not in doc:
        if required:
            raise InvalidArgumentError(f"Shared memory register request has no '{key}' field")
        return 0
    value = doc[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgumentError(
            f"Unable to parse '{key}': attempt to access JSON non-unsigned-integer as "
            "unsigned-integer"
        )
    return value


def register_system(registry: SharedMemoryRegistry, region: str, doc: dict[str, Any]) -> None:
    if not registry.enabled:
        raise UnsupportedError(DISABLED_MESSAGE)
    if not region:
        raise InvalidArgumentError(
            "'region name' is necessary to register system shared memory region"
        )
    if "key" not in doc:
        raise InvalidArgumentError("Shared memory register request has no 'key' field")
    key = doc["key"]
    if not isinstance(key, str):
        raise InvalidArgumentError(
            "Unable to parse 'key': attempt to access JSON non-string as string"
        )
    registry.register(
        region, key, _unsigned(doc, "offset", False), _unsigned(doc, "byte_size", True)
    )


def system_status(registry: SharedMemoryRegistry, region: str) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "key": s.key, "offset": s.offset, "byte_size": s.byte_size}
        for s in registry.status(region)
    ]


def register_cuda(region: str) -> None:
    if not region:
        raise InvalidArgumentError(
            "'region name' is necessary to register cuda shared memory region"
        )
    raise UnsupportedError(
        f"failed to register CUDA shared memory region: '{region[:128]}', GPUs not supported"
    )


def cuda_status(region: str) -> list[dict[str, Any]]:
    if region:
        raise NotFoundError(f"Unable to find cuda shared memory region: '{region[:128]}'")
    return []
