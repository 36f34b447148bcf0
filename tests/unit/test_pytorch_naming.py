"""Triton's PyTorch naming conventions: config tensor names to argument positions."""

from __future__ import annotations

import pytest

from naiad.backends.pytorch.naming import (
    NamingConvention,
    input_convention,
    input_positions,
    named_index,
    output_positions,
)
from naiad.errors import ModelConfigError


@pytest.mark.parametrize(
    "name,index",
    [("INPUT__0", 0), ("OUTPUT__12", 12), ("a__b__3", None), ("x__", 0), ("INPUT0", None)],
)
def test_named_index(name: str, index: int | None) -> None:
    assert named_index(name) == index


def test_forward_argument_names_win_over_named_index() -> None:
    assert input_convention(["b", "a"], ["a", "b"]) is NamingConvention.FORWARD_ARGUMENT
    assert input_positions("m", ["b", "a"], ["a", "b"]) == {"b": 1, "a": 0}


def test_named_index_maps_by_suffix_not_by_order() -> None:
    assert input_positions("m", ["INPUT__1", "INPUT__0"], ["x", "y"]) == {
        "INPUT__1": 1,
        "INPUT__0": 0,
    }


def test_other_names_map_by_config_order() -> None:
    assert input_positions("m", ["first", "second"], ["x", "y"]) == {"first": 0, "second": 1}
    # One name off the convention sends every output to config order.
    assert output_positions("m", ["OUT__1", "other"]) == {"OUT__1": 0, "other": 1}
    assert output_positions("m", ["OUT__1", "OUT__0"]) == {"OUT__1": 1, "OUT__0": 0}


def test_input_count_must_match_forward() -> None:
    with pytest.raises(ModelConfigError, match="configuration expects 1 inputs, model provides 2"):
        input_positions("m", ["INPUT__0"], ["x", "y"])


def test_positions_out_of_range_or_shared_are_refused() -> None:
    with pytest.raises(ModelConfigError, match="refers to position 5"):
        input_positions("m", ["INPUT__5", "INPUT__0"], ["x", "y"])
    with pytest.raises(ModelConfigError, match="both refer to position 0"):
        input_positions("m", ["A__0", "B__0"], ["x", "y"])
