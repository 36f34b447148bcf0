"""Python models under the dynamic batcher: Triton's list of requests by default, and
the opt-in (``naiad_stack_batch``) that hands ``execute`` one stacked batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.python_models import write_python_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

# Each response reports how many requests the execute call got and the rows it saw.
MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            rows = x.shape[0]
            seen = np.array([[len(requests), rows]] * rows, dtype=np.int32)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT0", x * 2), pb_utils.Tensor("SEEN", seen)]
                )
            )
        return responses
"""


def _config(name: str, stacked: bool) -> str:
    parameter = (
        'parameters { key: "naiad_stack_batch" value: { string_value: "true" } }' if stacked else ""
    )
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 3 ] }} ]
output [
  {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 3 ] }},
  {{ name: "SEEN" data_type: TYPE_INT32 dims: [ 2 ] }}
]
dynamic_batching {{ preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 30000000 }}
{parameter}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("python_batching")
    write_python_model(root, "listed", MODEL, _config("listed", stacked=False))
    write_python_model(root, "stacked", MODEL, _config("stacked", stacked=True))
    with ServerProcess([root]) as process:
        yield process


def _four_concurrent(server: ServerProcess, model: str) -> list[tuple[np.ndarray, np.ndarray]]:
    results: list[tuple[np.ndarray, np.ndarray] | Exception] = [ValueError("no result")] * 4

    def call(index: int) -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("INPUT0", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.full((1, 3), index, dtype=np.float32))
        try:
            result = client.infer(model, [tensor])
            results[index] = (result.as_numpy("OUTPUT0"), result.as_numpy("SEEN"))
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(not isinstance(r, Exception) for r in results), results
    return results  # type: ignore[return-value]


def test_default_hands_the_model_a_list_of_requests(server: ServerProcess) -> None:
    for index, (output, seen) in enumerate(_four_concurrent(server, "listed")):
        np.testing.assert_array_equal(output, np.full((1, 3), 2 * index, np.float32))
        assert seen.tolist() == [[4, 1]]  # four requests of one row each


def test_stacked_batch_opt_in_hands_the_model_one_array(server: ServerProcess) -> None:
    for index, (output, seen) in enumerate(_four_concurrent(server, "stacked")):
        np.testing.assert_array_equal(output, np.full((1, 3), 2 * index, np.float32))
        assert seen.tolist() == [[1, 4]]  # one request holding all four rows
