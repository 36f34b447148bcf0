"""FIL backend: forest models loaded and run with Treelite's GTIL, as Triton's FIL does.

Triton's FIL backend imports every format through Treelite, then post-processes the
forest's output: with ``output_class`` and without ``predict_proba`` a multi-class model
returns the argmax class and a binary one ``1.0``/``0.0`` against ``threshold``;
with ``predict_proba`` it returns the class scores (a binary model's single score, or
``[1 - p, p]`` when the config declares two output columns, as older FIL releases
did). Outputs are FP32. Files are read with Treelite's format readers only; pickles
are never loaded (scikit-learn models come as Treelite checkpoints, as in Triton).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import treelite
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import Backend, InstanceSpec, ModelContext, ModelInstance, ThreadedInstance
from naiad.backends.fil.loading import load_forest
from naiad.backends.fil.options import FilOptions
from naiad.backends.parameters import cores_per_instance, first_line
from naiad.errors import InternalError, InvalidArgumentError, ModelConfigError

# Below this many rows one thread is faster: waking a thread pool costs more than a
# small batch's trees (measured on 2 cores: batch 1 takes 0.2 ms on one thread, 1.5 ms
# on two).
PARALLEL_MIN_ROWS = 256


class FilBackend(Backend):
    name = "fil"

    def create_instance(self, context: ModelContext, spec: InstanceSpec) -> ModelInstance:
        options = FilOptions.from_config(context.config)
        path = context.model_file(options.default_filename)
        forest = load_forest(path, options, context.name)
        return FilInstance(context, forest, options)


class FilInstance(ThreadedInstance):
    def __init__(self, context: ModelContext, forest: treelite.Model, options: FilOptions) -> None:
        config = context.config
        if len(config.input) != 1 or len(config.output) != 1:
            raise ModelConfigError(
                f"model '{context.name}': the FIL backend takes one input ('input__0') and "
                "one output ('output__0')"
            )
        for tensor in (config.input[0], config.output[0]):
            if tensor.data_type != mc.TYPE_FP32:
                raise ModelConfigError(
                    f"model '{context.name}': FIL tensor '{tensor.name}' must be TYPE_FP32"
                )
        features = int(forest.num_feature)
        dims = list(config.input[0].dims)
        if dims[-1:] != [features] and dims[-1:] != [-1]:
            raise ModelConfigError(
                f"model '{context.name}': input '{config.input[0].name}' has dims {dims}, but "
                f"the model has {features} features"
            )
        self._input_dtype = np.dtype(forest.input_type)
        self._output_name = config.output[0].name
        self._output_dims = [int(d) for d in config.output[0].dims]
        self._forest = forest
        self._options = options
        self._features = features
        self._nthread = options.nthread or cores_per_instance(config)
        super().__init__(thread_name=f"fil-{context.name}")

    def run(
        self, inputs: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        (data,) = inputs.values()
        rows = data.reshape(-1, self._features) if data.size else data.reshape(0, self._features)
        rows = np.ascontiguousarray(rows, dtype=self._input_dtype)
        nthread = self._nthread if len(rows) >= PARALLEL_MIN_ROWS else 1
        try:
            raw = treelite.gtil.predict(self._forest, rows, nthread=nthread)
        except treelite.TreeliteError as exc:
            raise InternalError(f"FIL prediction failed: {first_line(exc)}") from None
        scores = np.asarray(raw, dtype=np.float32).reshape(len(rows), -1)
        output = self._postprocess(scores)
        expected = int(np.prod([d for d in self._output_dims if d > 0]))
        if -1 not in self._output_dims and output.shape[1] != expected:
            raise InvalidArgumentError(
                f"output '{self._output_name}' is configured with dims {self._output_dims}, "
                f"but the model produces {output.shape[1]} values per row"
            )
        shape = (*data.shape[:-1], *[d if d > 0 else output.shape[1] for d in self._output_dims])
        return {self._output_name: output.reshape(shape)}

    def _postprocess(self, scores: np.ndarray) -> np.ndarray:
        options = self._options
        if options.predict_proba:
            if scores.shape[1] == 1 and self._output_dims == [2]:
                return np.concatenate([1.0 - scores, scores], axis=1)
            return scores
        if not options.output_class:
            return scores
        if scores.shape[1] > 1:
            return np.argmax(scores, axis=1).astype(np.float32).reshape(-1, 1)
        return (scores > options.threshold).astype(np.float32)

    def close(self) -> None:
        super().close()
        del self._forest
