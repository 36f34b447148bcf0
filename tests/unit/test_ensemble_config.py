"""Ensemble config checks: the step graph is validated and errors name the tensor."""

from __future__ import annotations

import pytest

from naiad.config.ensemble import plan_ensemble
from naiad.config.model_config import parse_config_text
from naiad.errors import ModelConfigError

TENSOR = "data_type: TYPE_FP32 dims: [ 1 ]"


def _config(steps: str, inputs: str = "X", outputs: str = "Y", scheduling: bool = True) -> str:
    def tensors(names: str) -> str:
        return ", ".join(f'{{ name: "{n}" {TENSOR} }}' for n in names.split(",") if n)

    body = f"ensemble_scheduling {{ {steps} }}" if scheduling else ""
    return f"""
name: "ens"
platform: "ensemble"
input [ {tensors(inputs)} ]
output [ {tensors(outputs)} ]
{body}
"""


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str], version: int = -1) -> str:
    maps = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
    maps += " " + " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
    return f'step {{ model_name: "{model}" model_version: {version} {maps} }}'


def _plan(text: str):  # type: ignore[no-untyped-def]
    return plan_ensemble(parse_config_text(text, "test"), "test")


def test_a_diamond_is_planned_with_its_maps_and_versions() -> None:
    steps = _plan(
        _config(
            _step("a", {"IN": "X"}, {"OUT": "a"})
            + _step("b", {"IN": "a"}, {"OUT": "b"}, version=2)
            + _step("c", {"IN": "a"}, {"OUT": "c"})
            + _step("d", {"L": "b", "R": "c"}, {"OUT": "Y"})
        )
    )
    assert [s.model_name for s in steps] == ["a", "b", "c", "d"]
    assert steps[0].model_version == "" and steps[1].model_version == "2"
    assert steps[3].inputs == {"L": "b", "R": "c"}
    assert steps[3].consumes == {"b", "c"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _config(
                _step("a", {"IN": "X", "J": "loop"}, {"OUT": "Y"})
                + _step("b", {"IN": "Y"}, {"OUT": "loop"})
            ),
            "circular dependency through ensemble tensor",
        ),
        (
            _config(_step("a", {"IN": "X", "J": "nowhere"}, {"OUT": "Y"})),
            "tensor 'nowhere' is consumed",
        ),
        (_config(_step("a", {"IN": "X"}, {"OUT": "Z"})), "ensemble output 'Y' is not mapped"),
        (
            _config(_step("a", {"IN": "X"}, {"OUT": "Y"}), inputs="X,W"),
            "ensemble input 'W' is not mapped",
        ),
        (
            _config(_step("a", {"IN": "X"}, {"OUT": "Y"}) + _step("b", {"IN": "X"}, {"OUT": "Y"})),
            "ensemble tensor 'Y' can appear in an output map only once",
        ),
        (_config(_step("a", {"IN": "X"}, {"OUT": "X"}), outputs="X"), "'X' is an ensemble input"),
        (_config(_step("ens", {"IN": "X"}, {"OUT": "Y"})), "names the ensemble itself"),
        (
            _config(_step("a", {"IN": "X"}, {"OUT": "Y"}, version=0)),
            "'model_version' must be -1 or > 0",
        ),
        (_config(""), "at least one 'step'"),
        (_config("", scheduling=False), "requires 'ensemble_scheduling'"),
    ],
)
def test_bad_graphs_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ModelConfigError, match="ensemble 'ens'") as info:
        _plan(text)
    assert message in str(info.value)


def test_a_cycle_names_a_tensor_on_the_cycle_not_one_behind_it() -> None:
    # 'c' waits on the cycle a <-> b but is not on it.
    text = _config(
        _step("a", {"IN": "X", "J": "tb"}, {"OUT": "ta"})
        + _step("b", {"IN": "ta"}, {"OUT": "tb"})
        + _step("c", {"IN": "ta"}, {"OUT": "Y"})
    )
    with pytest.raises(ModelConfigError) as info:
        _plan(text)
    assert "'ta'" in str(info.value) or "'tb'" in str(info.value)
    assert "'c'" not in str(info.value)
