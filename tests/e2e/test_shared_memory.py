"""System shared memory against a real server, through ``tritonclient.utils.shared_memory``.

Inputs and outputs travel in POSIX shared memory over HTTP and gRPC, BYTES outputs
included (in a region sized exactly), with Triton's bounds errors; after unregister-all
and destroy, neither ``/dev/shm`` nor the server's descriptors hold anything of ours.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from naiad.examples import onnx_models
from tests.repository import simple_config, write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

PREFIX = "naiad_e2e_"
RUN = uuid.uuid4().hex[:8]
Client = httpclient.InferenceServerClient | grpcclient.InferenceServerClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("shm_repository")
    write_model(root, "simple", simple_config("simple", "INT32"), onnx_models.add_sub("INT32"))
    write_model(
        root, "simple_string", simple_config("simple_string", "BYTES"), onnx_models.add_sub("BYTES")
    )
    args = ["--allow-client-shm=true", f"--shm-key-prefix=/{PREFIX}"]
    with ServerProcess([root], *args) as process:
        yield process


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Client]:
    made: Client
    if request.param == "http":
        made = httpclient.InferenceServerClient(server.http_url)
    else:
        made = grpcclient.InferenceServerClient(server.grpc_url)
    made.unregister_system_shared_memory()
    made.unregister_cuda_shared_memory()  # Triton's examples do this first: must succeed
    yield made
    made.unregister_system_shared_memory()
    made.close()


class Regions:
    """Client-side regions of one test, destroyed (unlinked) at the end."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def create(self, name: str, size: int) -> tuple[str, Any]:
        key = f"/{PREFIX}{RUN}_{name}"
        handle = shm.create_shared_memory_region(name, key, size)
        self.handles.append(handle)
        return key, handle

    def destroy(self) -> None:
        for handle in self.handles:
            shm.destroy_shared_memory_region(handle)
        self.handles.clear()


@pytest.fixture
def regions() -> Iterator[Regions]:
    made = Regions()
    yield made
    made.destroy()


def _module(client: Client) -> Any:
    return httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient


def _status_names(client: Client) -> set[str]:
    status = client.get_system_shared_memory_status()
    if isinstance(client, httpclient.InferenceServerClient):
        return {region["name"] for region in status}
    return set(status.regions)


def _output_shape(result: Any, name: str) -> list[int]:
    output = result.get_output(name)
    return list(output["shape"] if isinstance(output, dict) else output.shape)


def test_int32_inputs_and_outputs_in_shared_memory(client: Client, regions: Regions) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    size = a.nbytes
    # Both inputs in one region at different offsets; outputs in their own regions.
    in_key, in_handle = regions.create("in", 2 * size)
    out0_key, out0_handle = regions.create("out0", size)
    out1_key, out1_handle = regions.create("out1", size)
    shm.set_shared_memory_region(in_handle, [a, b])
    client.register_system_shared_memory("in", in_key, 2 * size)
    client.register_system_shared_memory("out0", out0_key, size)
    client.register_system_shared_memory("out1", out1_key, size)
    assert {"in", "out0", "out1"} <= _status_names(client)

    module = _module(client)
    inputs = [module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_shared_memory("in", size)
    inputs[1].set_shared_memory("in", size, offset=size)
    outputs = [module.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1")]
    outputs[0].set_shared_memory("out0", size)
    outputs[1].set_shared_memory("out1", size)
    result = client.infer("simple", inputs, outputs=outputs)

    assert _output_shape(result, "OUTPUT0") == [1, 16]
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out0_handle, np.int32, [1, 16]), a + b)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out1_handle, np.int32, [1, 16]), a - b)
    output = result.get_output("OUTPUT0")
    if isinstance(output, dict):  # HTTP: name, datatype and shape only, as Triton answers
        assert set(output) == {"name", "datatype", "shape"}


def test_bytes_outputs_fill_a_region_sized_exactly(client: Client, regions: Regions) -> None:
    a = np.array([[str(i).encode() for i in range(16)]], dtype=np.object_)
    b = np.array([[b"1"] * 16], dtype=np.object_)
    sums = np.array([[str(i + 1).encode() for i in range(16)]], dtype=np.object_)
    diffs = np.array([[str(i - 1).encode() for i in range(16)]], dtype=np.object_)
    serialized_a, serialized_b = serialize_byte_tensor(a), serialize_byte_tensor(b)
    out0_size = len(serialize_byte_tensor(sums).item())
    out1_size = len(serialize_byte_tensor(diffs).item())
    in0_size, in1_size = len(serialized_a.item()), len(serialized_b.item())
    in0_key, in0 = regions.create("s_in0", in0_size)
    in1_key, in1 = regions.create("s_in1", in1_size)
    out0_key, out0 = regions.create("s_out0", out0_size)
    out1_key, out1 = regions.create("s_out1", out1_size)
    shm.set_shared_memory_region(in0, [serialized_a])
    shm.set_shared_memory_region(in1, [serialized_b])
    client.register_system_shared_memory("s_in0", in0_key, in0_size)
    client.register_system_shared_memory("s_in1", in1_key, in1_size)
    client.register_system_shared_memory("s_out0", out0_key, out0_size)
    client.register_system_shared_memory("s_out1", out1_key, out1_size)

    module = _module(client)
    inputs = [module.InferInput(n, [1, 16], "BYTES") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_shared_memory("s_in0", in0_size)
    inputs[1].set_shared_memory("s_in1", in1_size)
    outputs = [module.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1")]
    outputs[0].set_shared_memory("s_out0", out0_size)
    outputs[1].set_shared_memory("s_out1", out1_size)
    client.infer("simple_string", inputs, outputs=outputs)
    assert (shm.get_contents_as_numpy(out0, np.object_, [1, 16]) == sums).all()
    assert (shm.get_contents_as_numpy(out1, np.object_, [1, 16]) == diffs).all()

    # One byte too small: Triton's message, and nothing else breaks.
    client.unregister_system_shared_memory("s_out0")
    client.register_system_shared_memory("s_out0", out0_key, out0_size - 1)
    outputs[0].set_shared_memory("s_out0", out0_size - 1)
    with pytest.raises(InferenceServerException, match="should be at least"):
        client.infer("simple_string", inputs, outputs=outputs)


def test_raw_and_shared_memory_inputs_mix(client: Client, regions: Regions) -> None:
    """gRPC clients send raw contents only for inputs not in shared memory."""
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 5, dtype=np.int32)
    key, handle = regions.create("mix", b.nbytes)
    shm.set_shared_memory_region(handle, [b])
    client.register_system_shared_memory("mix", key, b.nbytes)
    module = _module(client)
    inputs = [module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_shared_memory("mix", b.nbytes)
    inputs[1].set_data_from_numpy(a)
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), b - a)


@pytest.mark.parametrize(
    ("offset", "byte_size", "message"),
    [
        (64, 4, "Invalid offset for shared memory region: 'bounds'"),
        (0, 65, "Invalid offset + byte size for shared memory region: 'bounds'"),
        (60, 8, "Invalid offset + byte size for shared memory region: 'bounds'"),
    ],
)
def test_out_of_bounds_offsets_are_refused(
    client: Client, regions: Regions, offset: int, byte_size: int, message: str
) -> None:
    key, _ = regions.create("bounds", 64)
    client.register_system_shared_memory("bounds", key, 64)
    module = _module(client)
    inputs = [module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_shared_memory("bounds", byte_size, offset=offset)
    inputs[1].set_data_from_numpy(np.zeros((1, 16), dtype=np.int32))
    with pytest.raises(InferenceServerException, match=re.escape(message)):
        client.infer("simple", inputs)


def test_unknown_region_and_status(client: Client) -> None:
    module = _module(client)
    inputs = [module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_shared_memory("nowhere", 64)
    inputs[1].set_data_from_numpy(np.zeros((1, 16), dtype=np.int32))
    with pytest.raises(InferenceServerException, match="Unable to find shared memory region"):
        client.infer("simple", inputs)
    with pytest.raises(InferenceServerException, match="Unable to find system shared memory"):
        client.get_system_shared_memory_status("nowhere")
    with pytest.raises(InferenceServerException, match="GPUs not supported"):
        client.register_cuda_shared_memory("gpu", b"\0" * 64, 0, 64)


def test_registration_is_checked(client: Client, regions: Regions) -> None:
    key, _ = regions.create("reg", 64)
    # Offset at the end of the segment, past it, and offset + size past 2**64 - 1.
    with pytest.raises(InferenceServerException, match="invalid args"):
        client.register_system_shared_memory("reg", key, 8, offset=64)
    with pytest.raises(InferenceServerException, match="invalid args"):
        client.register_system_shared_memory("reg", key, 65)
    with pytest.raises(InferenceServerException, match="Integer overflow detected"):
        client.register_system_shared_memory("reg", key, 2**64 - 1, offset=2)
    client.register_system_shared_memory("reg", key, 64)
    with pytest.raises(InferenceServerException, match="already in manager"):
        client.register_system_shared_memory("reg", key, 64)
    # Keys outside the allow-list, however spelled, and segments that do not exist.
    for bad in ("/other_segment", "///other", "/", "", f"/{PREFIX}../../etc/passwd"):
        with pytest.raises(InferenceServerException):
            client.register_system_shared_memory("bad", bad, 8)
    with pytest.raises(InferenceServerException, match="Unable to open shared memory region"):
        client.register_system_shared_memory("bad", f"/{PREFIX}{RUN}_missing", 8)
    assert "bad" not in _status_names(client)


def test_a_symlink_in_dev_shm_is_not_followed(client: Client, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x" * 64)
    link = Path(f"/dev/shm/{PREFIX}{RUN}_link")
    link.symlink_to(secret)
    try:
        with pytest.raises(InferenceServerException, match="Unable to open shared memory"):
            client.register_system_shared_memory("link", f"/{link.name}", 64)
    finally:
        link.unlink()


def test_after_unregister_all_nothing_of_ours_remains(
    server: ServerProcess, client: Client, regions: Regions
) -> None:
    for index in range(3):
        key, _ = regions.create(f"leak{index}", 4096)
        client.register_system_shared_memory(f"leak{index}", key, 4096)
    assert process_shm_descriptors(server) >= 3
    client.unregister_system_shared_memory()
    assert not _status_names(client)
    regions.destroy()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"{PREFIX}{RUN}")]
    assert process_shm_descriptors(server) == 0


def process_shm_descriptors(server: ServerProcess) -> int:
    """Open descriptors of the server process on our segments."""
    assert server.process is not None
    fd_dir = Path(f"/proc/{server.process.pid}/fd")
    count = 0
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith(f"/dev/shm/{PREFIX}"):
            count += 1
    return count


def test_server_metadata_announces_system_shared_memory(server: ServerProcess) -> None:
    metadata = httpclient.InferenceServerClient(server.http_url).get_server_metadata()
    assert "system_shared_memory" in metadata["extensions"]
    assert "cuda_shared_memory" not in metadata["extensions"]
