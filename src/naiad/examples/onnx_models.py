"""Small ONNX models built with ``onnx.helper``: the example repository, tests and benchmarks use them."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime this project supports

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
    "BF16": TensorProto.BFLOAT16,
}


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _shape(batch: bool, dims: Sequence[int | str]) -> list[int | str]:
    return (["batch"] if batch else []) + list(dims)


def add_sub(datatype: str = "INT32", dims: int = 16, batch: bool = True) -> bytes:
    """``OUTPUT0 = INPUT0 + INPUT1``, ``OUTPUT1 = INPUT0 - INPUT1`` (Triton's ``simple``).

    For BYTES the elements are decimal strings, cast to INT32 and back.
    """
    elem = ONNX_TYPES[datatype]
    shape = _shape(batch, [dims])
    inputs = [helper.make_tensor_value_info(n, elem, shape) for n in ("INPUT0", "INPUT1")]
    outputs = [helper.make_tensor_value_info(n, elem, shape) for n in ("OUTPUT0", "OUTPUT1")]
    if datatype == "BYTES":
        nodes = [
            helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
            helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32),
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Sub", ["a", "b"], ["diff"]),
            helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=TensorProto.STRING),
            helper.make_node("Cast", ["diff"], ["OUTPUT1"], to=TensorProto.STRING),
        ]
    else:
        nodes = [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ]
    return _model(helper.make_graph(nodes, f"add_sub_{datatype.lower()}", inputs, outputs))


def identity(datatype: str, dims: list[int], batch: bool = True) -> bytes:
    """``OUTPUT0 = INPUT0`` for any data type."""
    elem = ONNX_TYPES[datatype]
    shape = _shape(batch, dims)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        f"identity_{datatype.lower()}",
        [helper.make_tensor_value_info("INPUT0", elem, shape)],
        [helper.make_tensor_value_info("OUTPUT0", elem, shape)],
    )
    return _model(graph)


def mlp(sizes: tuple[int, ...] = (256, 1024, 1024, 10), seed: int = 0) -> bytes:
    """An FP32 multi-layer perceptron ``INPUT0 [-1, sizes[0]] -> OUTPUT0 [-1, sizes[-1]]``.

    ReLU between layers; weights are random but fixed by ``seed``.
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    current = "INPUT0"
    layers = list(itertools.pairwise(sizes))
    for index, (fan_in, fan_out) in enumerate(layers):
        weight = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        bias = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"w{index}"),
            numpy_helper.from_array(bias, f"b{index}"),
        ]
        last = index == len(layers) - 1
        matmul, added = f"mm{index}", "OUTPUT0" if last else f"add{index}"
        nodes += [
            helper.make_node("MatMul", [current, f"w{index}"], [matmul]),
            helper.make_node("Add", [matmul, f"b{index}"], [added]),
        ]
        if not last:
            nodes.append(helper.make_node("Relu", [added], [f"relu{index}"]))
            current = f"relu{index}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", sizes[-1]])],
        initializer=initializers,
    )
    return _model(graph)


def slow_matmul(width: int = 1024, layers: int = 8, seed: int = 0, batch: bool = False) -> bytes:
    """``OUTPUT0 = INPUT0 @ W^layers`` on FP32 ``[-1, width]``: slow enough for drain tests.

    The cost grows with the rows a request sends, so a test picks how long a request takes.
    With ``batch`` the tensors are ``[batch, rows, width]``, for batching models.
    """
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    nodes = []
    current = "INPUT0"
    for index in range(layers):
        out = "OUTPUT0" if index == layers - 1 else f"h{index}"
        nodes.append(helper.make_node("MatMul", [current, "w"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "slow_matmul",
        [
            helper.make_tensor_value_info(
                "INPUT0", TensorProto.FLOAT, _shape(batch, ["rows", width])
            )
        ],
        [
            helper.make_tensor_value_info(
                "OUTPUT0", TensorProto.FLOAT, _shape(batch, ["rows", width])
            )
        ],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    return _model(graph)


def spin(width: int = 256, seed: int = 0) -> bytes:
    """``OUTPUT0 = INPUT0`` (FP32 ``[-1, 1]``) after ``max(INPUT0)`` rounds of busy work.

    Each round is a ``width``-square matrix product on internal state, so a request of a
    few bytes can keep an instance busy for as long as a test needs.
    """
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    start = rng.standard_normal((width, width)).astype(np.float32)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["acc_in", "w"], ["product"]),
            helper.make_node("Tanh", ["product"], ["acc_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "spin_body",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [width, width]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [width, width]),
        ],
    )
    nodes = [
        helper.make_node("ReduceMax", ["INPUT0"], ["rounds_f"], keepdims=0),
        helper.make_node("Cast", ["rounds_f"], ["rounds"], to=TensorProto.INT64),
        helper.make_node("Loop", ["rounds", "true", "start"], ["acc"], body=body),
        helper.make_node("ReduceSum", ["acc"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["INPUT0", "nothing"], ["OUTPUT0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "spin",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(start, "start"),
            numpy_helper.from_array(np.array(True), "true"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        ],
    )
    return _model(graph)
