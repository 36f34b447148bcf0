"""Triton's PyTorch rules for matching config tensor names to model argument positions.

TorchScript and exported programs have no output names, and inputs are positional, so
Triton maps the names in ``config.pbtxt`` to positions by one convention per side:

- inputs: the names of ``forward``'s arguments if every config input is one of them;
  else ``<name>__<index>`` if every config input follows it; else config order.
- outputs: ``<name>__<index>`` if every config output follows it; else config order.

These functions are pure so that the rules can be tested without torch.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from naiad.errors import ModelConfigError

DELIMITER = "__"


class NamingConvention(enum.Enum):
    FORWARD_ARGUMENT = "FORWARD_ARGUMENT"
    NAMED_INDEX = "NAMED_INDEX"
    STRICT_CONFIG_ORDERING = "STRICT_CONFIG_ORDERING"


def named_index(name: str) -> int | None:
    """The ``<index>`` of ``<name>__<index>`` (text after the first ``__``), else ``None``."""
    position = name.find(DELIMITER)
    if position < 0:
        return None
    suffix = name[position + len(DELIMITER) :]
    if not all(char in "0123456789" for char in suffix):
        return None
    # Triton reads the suffix with atoi, so an empty one means index 0.
    return int(suffix) if suffix else 0


def input_convention(names: Sequence[str], forward_args: Sequence[str]) -> NamingConvention:
    if forward_args and all(name in forward_args for name in names):
        return NamingConvention.FORWARD_ARGUMENT
    if all(named_index(name) is not None for name in names):
        return NamingConvention.NAMED_INDEX
    return NamingConvention.STRICT_CONFIG_ORDERING


def output_convention(names: Sequence[str]) -> NamingConvention:
    if all(named_index(name) is not None for name in names):
        return NamingConvention.NAMED_INDEX
    return NamingConvention.STRICT_CONFIG_ORDERING


def input_positions(
    model: str, names: Sequence[str], forward_args: Sequence[str]
) -> dict[str, int]:
    """Config input name -> position among ``forward``'s arguments (self excluded)."""
    if len(names) != len(forward_args):
        raise ModelConfigError(
            f"unable to load model '{model}', configuration expects {len(names)} inputs, "
            f"model provides {len(forward_args)}"
        )
    convention = input_convention(names, forward_args)
    if convention is NamingConvention.FORWARD_ARGUMENT:
        positions = {name: list(forward_args).index(name) for name in names}
    else:
        positions = _positions(names, convention)
    _check_positions(model, "input", positions, len(forward_args))
    return positions


def output_positions(model: str, names: Sequence[str]) -> dict[str, int]:
    """Config output name -> index in the model's output tuple."""
    return _positions(names, output_convention(names))


def _positions(names: Sequence[str], convention: NamingConvention) -> dict[str, int]:
    if convention is NamingConvention.NAMED_INDEX:
        return {name: named_index(name) or 0 for name in names}
    return {name: index for index, name in enumerate(names)}


def _check_positions(model: str, kind: str, positions: dict[str, int], count: int) -> None:
    # Triton would index past the argument list or pass one tensor twice; refuse at load.
    seen: dict[int, str] = {}
    for name, position in positions.items():
        if position >= count:
            raise ModelConfigError(
                f"unable to load model '{model}': {kind} '{name}' refers to position "
                f"{position}, but the model takes {count} {kind}s"
            )
        if position in seen:
            raise ModelConfigError(
                f"unable to load model '{model}': {kind}s '{seen[position]}' and '{name}' "
                f"both refer to position {position}"
            )
        seen[position] = name
