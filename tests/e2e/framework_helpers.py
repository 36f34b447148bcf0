"""Helpers shared by the framework backends' e2e tests: repositories and two-protocol calls."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype

from tests.server_process import ServerProcess

PROTOCOLS = ("http", "grpc")


def write_config(repository: Path, name: str, config: str, version: int = 1) -> Path:
    """Create ``<repository>/<name>/<version>/`` with ``config.pbtxt``; returns the version dir."""
    version_dir = repository / name / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    (repository / name / "config.pbtxt").write_text(config)
    return version_dir


def infer(
    server: ServerProcess,
    protocol: str,
    model: str,
    inputs: dict[str, np.ndarray],
    outputs: list[str],
) -> dict[str, np.ndarray]:
    """One inference with the real tritonclient of ``protocol``; outputs by name."""
    module = httpclient if protocol == "http" else grpcclient
    client = (
        httpclient.InferenceServerClient(server.http_url)
        if protocol == "http"
        else grpcclient.InferenceServerClient(server.grpc_url)
    )
    tensors = []
    for name, array in inputs.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    requested = [module.InferRequestedOutput(name) for name in outputs]
    try:
        result = client.infer(model, tensors, outputs=requested)
        return {name: result.as_numpy(name) for name in outputs}
    finally:
        client.close()


def infer_concurrently(
    server: ServerProcess,
    protocol: str,
    model: str,
    batches: list[dict[str, np.ndarray]],
    outputs: list[str],
) -> list[dict[str, np.ndarray]]:
    """Send every batch at once from its own thread (exercises every instance)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(batches)) as pool:
        futures = [pool.submit(infer, server, protocol, model, batch, outputs) for batch in batches]
        return [future.result(timeout=60) for future in futures]


def model_states(server: ServerProcess) -> dict[str, dict[str, str]]:
    """The repository index (name -> state and reason), as tritonclient reads it."""
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        return {entry["name"]: entry for entry in client.get_model_repository_index()}
    finally:
        client.close()


def model_config(server: ServerProcess, model: str) -> dict[str, object]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        config: dict[str, object] = client.get_model_config(model)
        return config
    finally:
        client.close()


def model_metadata(server: ServerProcess, model: str) -> dict[str, object]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        metadata: dict[str, object] = client.get_model_metadata(model)
        return metadata
    finally:
        client.close()
