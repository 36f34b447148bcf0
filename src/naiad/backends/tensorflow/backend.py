"""TensorFlow backend: SavedModel and frozen GraphDef models, run in TF1-style sessions.

Sessions are how Triton's TensorFlow backend (and TF Serving) run models: one graph,
feeds and fetches by tensor name, and thread pools configured per session. Config
``parameters`` use Triton's keys: ``TF_GRAPH_TAG``, ``TF_SIGNATURE_DEF``,
``TF_NUM_INTRA_THREADS``, ``TF_NUM_INTER_THREADS``, ``TF_USE_PER_SESSION_THREADS`` and
``MAX_SESSION_SHARE_COUNT`` (instances that share one session; default 1).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# TensorFlow logs start-up notes (oneDNN, CPU features) at INFO on stderr; keep the
# server's log to warnings and errors unless the user asked for more.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import tensorflow as tf
from tensorflow.python.util import deprecation
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import Backend, InstanceSpec, ModelContext, ModelInstance, ThreadedInstance
from naiad.backends.parameters import (
    bool_parameter,
    first_line,
    int_parameter,
    string_parameter,
)
from naiad.backends.tensorflow.autocomplete import complete_config
from naiad.backends.tensorflow.signature import DEFAULT_SIGNATURE, DEFAULT_TAG, read_signature
from naiad.errors import InternalError, InvalidArgumentError, ModelConfigError, ModelLoadError

SAVEDMODEL = "tensorflow_savedmodel"
GRAPHDEF = "tensorflow_graphdef"
DEFAULT_FILENAMES = {SAVEDMODEL: "model.savedmodel", GRAPHDEF: "model.graphdef"}


def model_kind(config: mc.ModelConfig, version_dirs: Sequence[Path]) -> str:
    """The platform: from the config, else from the file the version holds."""
    if config.platform in DEFAULT_FILENAMES:
        return config.platform
    if config.platform:
        raise ModelConfigError(
            f"model '{config.name}': platform '{config.platform}' is not a TensorFlow platform"
        )
    for version_dir in version_dirs:
        if config.default_model_filename:
            path = version_dir / config.default_model_filename
            if path.exists():
                return SAVEDMODEL if path.is_dir() else GRAPHDEF
        for kind, filename in DEFAULT_FILENAMES.items():
            if (version_dir / filename).exists():
                return kind
    return SAVEDMODEL


class TensorflowBackend(Backend):
    name = "tensorflow"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[Path, list[_SharedSession]] = {}

    def auto_complete_config(
        self, config: mc.ModelConfig, model_dir: Path, version_dirs: Sequence[Path]
    ) -> None:
        kind = model_kind(config, version_dirs)
        if not config.platform:
            config.platform = kind
        if kind != SAVEDMODEL:
            return  # a GraphDef carries no signature to complete from
        filename = config.default_model_filename or DEFAULT_FILENAMES[SAVEDMODEL]
        path = next((d / filename for d in version_dirs if (d / filename).is_dir()), None)
        if path is None:
            return  # loading reports the missing model with its path
        tag, key = _signature_choice(config)
        complete_config(config, read_signature(path, tag, key, config.name))

    def create_instance(self, context: ModelContext, spec: InstanceSpec) -> ModelInstance:
        kind = model_kind(context.config, [context.version_dir])
        path = context.model_file(DEFAULT_FILENAMES[kind])
        if not path.exists():
            raise ModelLoadError(
                f"unable to find '{path}' for model '{context.name}' version {context.version}"
            )
        share = int_parameter(context.config, "MAX_SESSION_SHARE_COUNT", minimum=1) or 1
        with self._lock:
            shared = self._sessions.setdefault(path, [])
            session = next((s for s in shared if s.users < share), None)
            if session is None:
                session = _SharedSession(*_open_session(context, kind, path))
                shared.append(session)
            session.users += 1
        try:
            return TensorflowInstance(context, session, lambda: self._release(path, session))
        except BaseException:
            self._release(path, session)
            raise

    def _release(self, path: Path, session: _SharedSession) -> None:
        with self._lock:
            session.users -= 1
            if session.users == 0:
                self._sessions[path].remove(session)
                session.session.close()


@dataclass(eq=False)
class _SharedSession:
    session: tf.compat.v1.Session
    inputs: dict[str, str]
    outputs: dict[str, str]
    users: int = 0


def _signature_choice(config: mc.ModelConfig) -> tuple[str, str]:
    tag = string_parameter(config, "TF_GRAPH_TAG") or DEFAULT_TAG
    key = string_parameter(config, "TF_SIGNATURE_DEF") or DEFAULT_SIGNATURE
    return tag, key


def _session_config(config: mc.ModelConfig) -> tf.compat.v1.ConfigProto:
    proto = tf.compat.v1.ConfigProto()
    intra = int_parameter(config, "TF_NUM_INTRA_THREADS")
    if intra:
        proto.intra_op_parallelism_threads = intra
    inter = int_parameter(config, "TF_NUM_INTER_THREADS")
    if inter:
        proto.inter_op_parallelism_threads = inter
    if bool_parameter(config, "TF_USE_PER_SESSION_THREADS"):
        proto.use_per_session_threads = True
    return proto


def _open_session(
    context: ModelContext, kind: str, path: Path
) -> tuple[tf.compat.v1.Session, dict[str, str], dict[str, str]]:
    """A session holding the model, and config tensor name -> graph tensor name."""
    config = context.config
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=_session_config(config))
    try:
        with graph.as_default():
            if kind == SAVEDMODEL:
                tag, key = _signature_choice(config)
                signature = read_signature(path, tag, key, context.name)
                with deprecation.silence():  # the TF1 loader is what sessions need
                    tf.compat.v1.saved_model.loader.load(session, [tag], str(path))
                available = {**signature.inputs, **signature.outputs}
                names = {k: t.tensor_name for k, t in available.items()}
            else:
                graph_def = tf.compat.v1.GraphDef()
                graph_def.ParseFromString(path.read_bytes())
                tf.graph_util.import_graph_def(graph_def, name="")
                names = {}
    except ModelLoadError:
        session.close()
        raise
    except Exception as exc:  # protobuf DecodeError, tf.errors.*, OSError, ...
        session.close()
        raise ModelLoadError(
            f"unable to load model '{context.name}': {first_line(exc)} ({path})"
        ) from None
    inputs = {t.name: _tensor(graph, names, t.name, "input", context.name) for t in config.input}
    outputs = {t.name: _tensor(graph, names, t.name, "output", context.name) for t in config.output}
    return session, inputs, outputs


def _tensor(graph: tf.Graph, names: dict[str, str], name: str, kind: str, model: str) -> str:
    """The graph tensor a config name refers to (a signature key, or a GraphDef op name)."""
    tensor = names.get(name) if names else (name if ":" in name else f"{name}:0")
    try:
        if tensor is None:
            raise KeyError(name)
        graph.get_tensor_by_name(tensor)
    except (KeyError, ValueError):
        where = "signature" if names else "graph"
        raise ModelLoadError(
            f"unable to load model '{model}', configuration expects {kind} '{name}', which "
            f"the model's {where} does not provide"
        ) from None
    return tensor


class TensorflowInstance(ThreadedInstance):
    def __init__(
        self, context: ModelContext, shared: _SharedSession, release: Callable[[], None]
    ) -> None:
        super().__init__(thread_name=f"tf-{context.name}")
        self._shared = shared
        self._release = release

    def run(
        self, inputs: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        shared = self._shared
        feeds = {shared.inputs[name]: array for name, array in inputs.items()}
        fetches = [shared.outputs[name] for name in output_names]
        try:
            results = shared.session.run(fetches, feeds)
        except tf.errors.InvalidArgumentError as exc:
            raise InvalidArgumentError(f"TensorFlow: {first_line(exc.message)}") from None
        except tf.errors.OpError as exc:
            raise InternalError(f"TensorFlow: {first_line(exc.message)}") from None
        return {name: np.asarray(value) for name, value in zip(output_names, results, strict=True)}

    def close(self) -> None:
        super().close()
        self._release()
