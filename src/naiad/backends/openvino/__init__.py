"""The OpenVINO backend (``backend: "openvino"``): IR and ONNX models on the CPU.

Needs the ``naiad[openvino]`` extra. Importing ``openvino`` also imports its conversion
tools, which send a usage event over the network through ``openvino_telemetry`` (from a
forked process, which can also deadlock a process whose threads are running models).
A server must do neither, so this package makes that optional import fail before
``openvino`` is imported; OpenVINO then falls back to its built-in no-op stub.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
