"""``pb_utils.Logger``: model log messages that reach the server's log (Triton's format).

Each message is sent to the server with the file and line of the caller, so the server
log shows ``model.py:12]`` as Triton's does. Verbose messages are dropped in the worker
unless the server runs with ``--log-verbose``.
"""

from __future__ import annotations

import enum
import sys

from . import context

# Python logging levels, which the server logs with.
_VERBOSE, _INFO, _WARNING, _ERROR = 10, 20, 30, 40


class LogLevel(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


_TO_LOGGING = {
    LogLevel.INFO: _INFO,
    LogLevel.WARNING: _WARNING,
    LogLevel.ERROR: _ERROR,
    LogLevel.VERBOSE: _VERBOSE,
}


def _emit(message: str, level: int) -> None:
    if level == _VERBOSE and context.log_verbose <= 0:
        return
    frame = sys._getframe(2)  # the model's frame: above log_*() and this helper
    context.log_sink(level, str(message), frame.f_code.co_filename, frame.f_lineno)


class Logger:
    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE
    LogLevel = LogLevel

    @staticmethod
    def log(message: str, level: int = LogLevel.INFO) -> None:
        _emit(message, _TO_LOGGING[LogLevel(level)])

    @staticmethod
    def log_info(message: str) -> None:
        _emit(message, _INFO)

    @staticmethod
    def log_warn(message: str) -> None:
        _emit(message, _WARNING)

    @staticmethod
    def log_error(message: str) -> None:
        _emit(message, _ERROR)

    @staticmethod
    def log_verbose(message: str) -> None:
        _emit(message, _VERBOSE)
