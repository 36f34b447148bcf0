"""A short run of the decoder fuzzer (tests/fuzz/fuzz_decoders.py): zero crashes.

The acceptance run is ``python -m tests.fuzz.fuzz_decoders -runs=10000`` (and longer
soaks with ``-max_total_time``); CI runs this brief one on every change.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")
ROOT = Path(__file__).resolve().parents[2]


def test_fuzz_decoders_briefly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.fuzz_decoders", "-runs=10000", "-seed=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Done 10000 runs" in output


def test_regression_empty_tensor_with_huge_dims() -> None:
    """Found by the fuzzer: a 0 dim next to dims whose product overflows made numpy
    raise ValueError (a 500) instead of a clear 400."""
    from tritonclient.grpc import service_pb2 as pb

    from naiad.errors import InvalidArgumentError
    from naiad.frontends.grpc.codec import decode_infer_request

    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="I", datatype="INT32", shape=[0, 2**62, 2**62])
    with pytest.raises(InvalidArgumentError, match="overflows int64"):
        decode_infer_request(message)
