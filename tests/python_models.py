"""Triton python-backend models for the tests, written as ``model.py`` text at test time."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_python_model(
    repository: Path,
    name: str,
    model_py: str,
    config: str | None,
    version: int = 1,
    filename: str = "model.py",
) -> Path:
    model_dir = repository / name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    if config is not None:
        (model_dir / "config.pbtxt").write_text(textwrap.dedent(config))
    (model_dir / str(version) / filename).write_text(textwrap.dedent(model_py))
    return model_dir


ADD_SUB = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        out = pb_utils.get_output_config_by_name(config, "OUTPUT0")
        self.dtype = pb_utils.triton_string_to_numpy(out["data_type"])
        pb_utils.Logger.log_info(f"add_sub ready as {args['model_instance_name']}")

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("OUTPUT0", (a + b).astype(self.dtype)),
                pb_utils.Tensor("OUTPUT1", (a - b).astype(self.dtype)),
            ]))
        return responses
"""

ADD_SUB_CONFIG = """
name: "add_sub"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
"""

IDENTITY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]
            )
            for r in requests
        ]
"""


def identity_config(name: str, data_type: str) -> str:
    return f"""
    name: "{name}"
    backend: "python"
    input [ {{ name: "INPUT0" data_type: {data_type} dims: [ -1 ] }} ]
    output [ {{ name: "OUTPUT0" data_type: {data_type} dims: [ -1 ] }} ]
    """


AUTO_COMPLETE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "IN", "data_type": "TYPE_INT32", "dims": [3]})
        auto_complete_model_config.add_output({"name": "OUT", "data_type": "TYPE_INT32", "dims": [3]})
        auto_complete_model_config.set_max_batch_size(4)
        return auto_complete_model_config

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 3)]
            )
            for r in requests
        ]
"""

# Fails the requests whose value is negative, with INVALID_ARG; doubles the others.
VALUE_ERRORS = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy().reshape(-1)[0])
            if value < 0:
                error = pb_utils.TritonError(f"negative input {value}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            elif value == 13:
                raise ValueError("thirteen fails the whole batch")
            else:
                out = np.array([value * 2], dtype=np.int32)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return responses
"""

VALUE_ERRORS_CONFIG = """
name: "value_errors"
backend: "python"
instance_group [ { count: 1 kind: KIND_CPU } ]
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

INIT_FAILS = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        raise ValueError("cannot read the weights of " + args["model_name"])

    def execute(self, requests):
        return []
"""

# Echoes what Triton's request API tells a model.
PARAMETERS = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            seen = {
                "parameters": json.loads(request.parameters()),
                "id": request.request_id(),
                "requested": request.requested_output_names(),
                "flags": request.flags(),
                "cancelled": request.is_cancelled(),
            }
            out = np.array([json.dumps(seen).encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return responses
"""

PARAMETERS_CONFIG = """
name: "parameters"
backend: "python"
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

ASYNC_SLEEP = """
import asyncio
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        await asyncio.sleep(0.2)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([time.time()]))])
            for _ in requests
        ]
"""

ASYNC_SLEEP_CONFIG = """
name: "async_sleep"
backend: "python"
instance_group [ { count: 1 kind: KIND_CPU } ]
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP64 dims: [ 1 ] } ]
"""

PID = """
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            if pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0] == 1:
                time.sleep(5)  # long enough to be killed while running
        out = np.array([os.getpid()], dtype=np.int64)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("PID", out)]) for _ in requests]
"""

PID_CONFIG = """
name: "pid"
backend: "python"
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "PID" data_type: TYPE_INT64 dims: [ 1 ] } ]
"""

# Decoupled models after Triton's examples (repeat_int32, square_int32): responses are
# sent from a thread after execute returns.
REPEAT = """
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            sender = request.get_response_sender()
            threading.Thread(target=self._send, args=(values, sender)).start()
        return None

    def _send(self, values, sender):
        for index, value in enumerate(values):
            time.sleep(0.01)  # lets the responses of two requests interleave
            sender.send(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([value], dtype=np.int32)),
                pb_utils.Tensor("IDX", np.array([index], dtype=np.uint32)),
            ]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""
REPEAT_CONFIG = """
name: "repeat"
backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [
  { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "IDX" data_type: TYPE_UINT32 dims: [ 1 ] }
]
"""

SQUARE = """
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            count = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            sender = request.get_response_sender()
            threading.Thread(target=self._send, args=(count, sender)).start()

    def _send(self, count, sender):
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        if count < 0:
            error = pb_utils.TritonError(f"negative count {count}", pb_utils.TritonError.INVALID_ARG)
            sender.send(pb_utils.InferenceResponse(error=error), flags=final)
            return
        for _ in range(count):
            sender.send(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", np.array([count], dtype=np.int32))]
            ))
        sender.send(flags=final)
"""
SQUARE_CONFIG = """
name: "square"
backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

REQUIREMENTS = """
import numpy as np
import triton_python_backend_utils as pb_utils
from text_unidecode import unidecode


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out = np.array([unidecode(t.decode()).encode() for t in text.reshape(-1)], dtype=object)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return responses
"""

REQUIREMENTS_CONFIG = """
name: "requirements"
backend: "python"
input [ { name: "IN" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ -1 ] } ]
"""

# A python-based backend (one model.py for many models), logging its calls to a file
# named by the model's parameters.
PYTHON_BASED_BACKEND = """
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    VARIANT = "{variant}"

    def initialize(self, args):
        self.name = args["model_name"]
        params = json.loads(args["model_config"]).get("parameters", {{}})
        self.log = params.get("CALL_LOG", {{}}).get("string_value", "")
        self._record("initialize " + args["model_instance_name"])

    def _record(self, call):
        if self.log:
            with open(self.log, "a") as handle:
                handle.write(f"{{self.name}} {{call}}\\n")

    def execute(self, requests):
        self._record("execute")
        text = f"{{self.VARIANT}}:{{self.name}}:{{os.path.basename(pb_utils.get_model_dir())}}"
        out = np.array([text.encode()], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]) for _ in requests]

    def finalize(self):
        self._record("finalize")
"""


def python_based_config(name: str, backend: str, extra: str = "") -> str:
    return f"""
    name: "{name}"
    backend: "{backend}"
    {extra}
    input [ {{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }} ]
    output [ {{ name: "OUT" data_type: TYPE_STRING dims: [ 1 ] }} ]
    """
