"""The typed messages between the server and a worker, and their JSON header form.

Every header is a JSON object with ``"k"``, the message kind. Messages are dataclasses;
their wire form is spelled out here only: ``to_header`` / ``from_header``, and for the
per-request messages (execute, its answer, streamed responses) the ``*_header``
functions and position constants that the hot paths use without the dataclasses.
Tensors are described by a compact list ``[name, datatype, shape, where, offset,
nbytes]`` (``where``: inline payload or the frame's memfd, see ``wire``).
No pickle: a header holds only JSON values, tensor bytes are raw.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

# Message kinds, server -> worker.
INIT = "init"
AUTO_COMPLETE = "auto_complete"
EXECUTE = "execute"
IS_READY = "is_ready"
FINALIZE = "finalize"
# The answer to a BLS call: one response (``final`` ends the call), or a control result.
BLS_RESPONSE = "bls_response"
# The client of request ``index`` of ``batch`` went away: ``is_cancelled()`` turns true.
CANCEL = "cancel"
# Worker -> server.
INIT_DONE = "init_done"
AUTO_COMPLETE_DONE = "auto_complete_done"
EXECUTE_DONE = "execute_done"
IS_READY_DONE = "is_ready_done"
FINALIZE_DONE = "finalize_done"
LOG = "log"
METRICS = "metrics"
# One response of a decoupled model, sent whenever the model calls ``sender.send``.
STREAM_RESPONSE = "stream_response"
# BLS: run a request on any model of the server, or load / unload / ask about a model.
BLS_REQUEST = "bls_request"

# Tensor descriptor positions.
T_NAME, T_DATATYPE, T_SHAPE, T_WHERE, T_OFFSET, T_NBYTES = range(6)
# Positions in the wire lists of ``RequestMsg`` and ``ResponseMsg``: the per-request hot
# paths read and write these lists directly instead of going through the dataclasses.
R_ID, R_INPUTS, R_REQUESTED, R_PARAMETERS, R_CORRELATION, R_FLAGS, R_TIMEOUT = range(7)
P_OUTPUTS, P_ERROR, P_PARAMETERS = range(3)

M = TypeVar("M", bound="Message")


@dataclass(slots=True)
class Message:
    """A flat message: every field is a JSON value."""

    KIND: ClassVar[str] = ""

    def to_header(self) -> dict[str, Any]:
        header = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        header["k"] = self.KIND
        return header

    @classmethod
    def from_header(cls: type[M], header: dict[str, Any]) -> M:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in header.items() if k in names})


@dataclass(slots=True)
class ModelSourceInfo(Message):
    """Which file holds ``TritonPythonModel`` and how to import it."""

    module_file: str = ""
    module_name: str = ""
    sys_paths: list[str] = field(default_factory=list)
    # What ``pb_utils.get_model_dir()`` returns (Triton: the version directory).
    model_dir: str = ""
    log_verbose: int = 0


@dataclass(slots=True)
class InitMsg(ModelSourceInfo):
    KIND: ClassVar[str] = INIT
    # Triton's initialize(args), every value a string.
    args: dict[str, str] = field(default_factory=dict)
    instance_name: str = ""
    # model_transaction_policy { decoupled: true }: responses go out one by one.
    decoupled: bool = False
    shared_memory: bool = True
    shm_threshold_bytes: int = 0


@dataclass(slots=True)
class InitDoneMsg(Message):
    KIND: ClassVar[str] = INIT_DONE
    error: str | None = None
    is_async: bool = False
    has_is_ready: bool = False
    ready: bool = True
    pid: int = 0


@dataclass(slots=True)
class AutoCompleteMsg(ModelSourceInfo):
    KIND: ClassVar[str] = AUTO_COMPLETE
    model_name: str = ""
    model_config: str = ""


@dataclass(slots=True)
class AutoCompleteDoneMsg(Message):
    KIND: ClassVar[str] = AUTO_COMPLETE_DONE
    model_config: str | None = None
    error: str | None = None


@dataclass(slots=True)
class IsReadyMsg(Message):
    KIND: ClassVar[str] = IS_READY


@dataclass(slots=True)
class IsReadyDoneMsg(Message):
    KIND: ClassVar[str] = IS_READY_DONE
    ready: bool = True
    error: str | None = None


@dataclass(slots=True)
class FinalizeMsg(Message):
    KIND: ClassVar[str] = FINALIZE


@dataclass(slots=True)
class FinalizeDoneMsg(Message):
    KIND: ClassVar[str] = FINALIZE_DONE
    error: str | None = None


@dataclass(slots=True)
class LogMsg(Message):
    KIND: ClassVar[str] = LOG
    # Python logging levels (10 verbose, 20 info, 30 warning, 40 error).
    level: int = 20
    message: str = ""
    file: str = ""
    line: int = 0


@dataclass(slots=True)
class MetricsMsg(Message):
    """Every custom metric family of the worker (``pb_metrics.snapshot()``), sent on change."""

    KIND: ClassVar[str] = METRICS
    families: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class ErrorInfo:
    """An error for one request: a Triton error code name and its message."""

    code: str
    message: str

    def to_wire(self) -> list[str]:
        return [self.code, self.message]

    @classmethod
    def from_wire(cls, raw: list[str] | None) -> ErrorInfo | None:
        return None if raw is None else cls(str(raw[0]), str(raw[1]))


@dataclass(slots=True)
class RequestMsg:
    """One inference request of a batch."""

    id: str
    inputs: list[list[Any]]
    requested_outputs: list[str]
    # JSON text, as Triton's ``request.parameters()`` returns it.
    parameters: str = "{}"
    correlation_id: int | str = 0
    flags: int = 0
    timeout_us: int = 0

    def to_wire(self) -> list[Any]:
        return [
            self.id,
            self.inputs,
            self.requested_outputs,
            self.parameters,
            self.correlation_id,
            self.flags,
            self.timeout_us,
        ]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> RequestMsg:
        return cls(*raw)


@dataclass(slots=True)
class ExecuteMsg:
    """A batch: every request of one ``execute`` call, in one frame."""

    KIND: ClassVar[str] = EXECUTE
    batch: int
    requests: list[RequestMsg]

    def to_header(self) -> dict[str, Any]:
        return execute_header(self.batch, [r.to_wire() for r in self.requests])

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> ExecuteMsg:
        return cls(header["batch"], [RequestMsg.from_wire(r) for r in header["requests"]])


def execute_header(batch: int, requests: list[list[Any]]) -> dict[str, Any]:
    """``ExecuteMsg``'s header from requests already in wire form."""
    return {"k": EXECUTE, "batch": batch, "requests": requests}


@dataclass(slots=True)
class ResponseMsg:
    """The answer to one request: outputs, or an error for that request alone."""

    outputs: list[list[Any]] = field(default_factory=list)
    error: ErrorInfo | None = None
    parameters: str = "{}"

    def to_wire(self) -> list[Any]:
        return [self.outputs, None if self.error is None else self.error.to_wire(), self.parameters]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> ResponseMsg:
        return cls(raw[0], ErrorInfo.from_wire(raw[1]), raw[2])


@dataclass(slots=True)
class ExecuteDoneMsg:
    """Per-request responses, or one error that failed the whole batch."""

    KIND: ClassVar[str] = EXECUTE_DONE
    batch: int
    responses: list[ResponseMsg] = field(default_factory=list)
    error: str | None = None
    # CLOCK_MONOTONIC (shared by the processes of one machine) when the worker took the
    # batch up: a batch sent ahead of time waited in the worker's socket before that.
    started_ns: int = 0

    def to_header(self) -> dict[str, Any]:
        return execute_done_header(
            self.batch, [r.to_wire() for r in self.responses], self.error, self.started_ns
        )

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> ExecuteDoneMsg:
        responses = [ResponseMsg.from_wire(r) for r in header["responses"]]
        return cls(header["batch"], responses, header.get("error"), header.get("started_ns", 0))


def execute_done_header(
    batch: int, responses: list[list[Any]], error: str | None, started_ns: int
) -> dict[str, Any]:
    """``ExecuteDoneMsg``'s header from responses already in wire form."""
    return {
        "k": EXECUTE_DONE,
        "batch": batch,
        "responses": responses,
        "error": error,
        "started_ns": started_ns,
    }


@dataclass(slots=True)
class StreamResponseMsg:
    """One response of a decoupled model to request ``index`` of ``batch``.

    ``response`` is None for a flag-only send (``send(flags=FINAL)``); ``final`` closes
    that request's stream.
    """

    KIND: ClassVar[str] = STREAM_RESPONSE
    batch: int
    index: int
    response: ResponseMsg | None
    final: bool

    def to_header(self) -> dict[str, Any]:
        response = None if self.response is None else self.response.to_wire()
        return stream_response_header(self.batch, self.index, response, self.final)

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> StreamResponseMsg:
        raw = header.get("response")
        response = None if raw is None else ResponseMsg.from_wire(raw)
        return cls(header["batch"], header["index"], response, bool(header["final"]))


def stream_response_header(
    batch: int, index: int, response: list[Any] | None, final: bool
) -> dict[str, Any]:
    """``StreamResponseMsg``'s header from a response already in wire form."""
    return {
        "k": STREAM_RESPONSE,
        "batch": batch,
        "index": index,
        "response": response,
        "final": final,
    }


@dataclass(slots=True)
class CancelMsg(Message):
    """Request ``index`` of ``batch`` was cancelled by its client (server -> worker)."""

    KIND: ClassVar[str] = CANCEL
    batch: int = 0
    index: int = 0


@dataclass(slots=True)
class BlsRequestMsg(Message):
    """A BLS call from the model (worker -> server), answered by ``bls_response`` frames.

    ``op`` is ``infer`` (``request`` is a ``RequestMsg`` wire list; ``decoupled``: stream
    every response), or ``load`` / ``unload`` / ``ready`` (model management).
    """

    KIND: ClassVar[str] = BLS_REQUEST
    call: int = 0
    op: str = "infer"
    model_name: str = ""
    model_version: str = ""
    request: list[Any] | None = None
    decoupled: bool = False
    config: str = ""
    # load_model's files: name -> base64 text (JSON carries no bytes).
    files: dict[str, str] = field(default_factory=dict)
    unload_dependents: bool = False


@dataclass(slots=True)
class BlsResponseMsg(Message):
    """One answer to BLS call ``call``: a ``ResponseMsg`` wire list (None for a flag-only
    final), ``final`` when the call is over, and ``ready`` for ``is_model_ready``."""

    KIND: ClassVar[str] = BLS_RESPONSE
    call: int = 0
    response: list[Any] | None = None
    final: bool = True
    ready: bool = False
