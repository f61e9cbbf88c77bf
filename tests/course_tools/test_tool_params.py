"""Parsing ``k=v`` parameters: numbers people write, and errors that show the valid ranges."""

from __future__ import annotations

from typing import Any, Literal, get_args

import pytest
from pydantic import Field

from course_tools import load_tools
from course_tools.base import ToolParams
from course_tools.params import (
    ParamError,
    _kind,
    _limits,
    _strip_optional,
    build_params,
    describe_params,
    parse_number,
    split_assignments,
)


class TrainParams(ToolParams):
    steps: int = Field(20_000, ge=1_000, le=1_000_000, description="env steps")
    env: Literal["CartPole-v1", "MountainCar-v0"] = "CartPole-v1"
    lr: float = Field(1e-3, gt=0, le=1.0)
    double: bool = False
    note: str | None = None


def _errors(raw: dict[str, Any], model: type[ToolParams] = TrainParams) -> list[str]:
    with pytest.raises(ParamError) as info:
        build_params(model, raw, where="test.tool train")
    return info.value.problems


@pytest.mark.parametrize(("text", "value"), [
    ("20000", 20_000), ("20k", 20_000), ("1.5M", 1_500_000), ("1e5", 100_000),
    ("10^4", 10_000), ("20_000", 20_000), ("2**10", 1024), (".5", 0.5), ("-3", -3),
])
def test_numbers_people_write(text: str, value: float) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["abc", "1e", "k", "20kk", "", "1..2"])
def test_not_numbers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_number(text)


def test_valid_parameters_are_typed() -> None:
    raw = split_assignments("steps=20k env=cartpole-v1 lr=1e-4 double=yes note=hi")
    params = build_params(TrainParams, raw)
    assert params == TrainParams(steps=20_000, env="CartPole-v1", lr=1e-4, double=True,
                                 note="hi")
    assert params.model_fields_set == {"steps", "env", "lr", "double", "note"}


def test_out_of_range_shows_the_range() -> None:
    assert _errors({"steps": "-5"}) == ["steps must be a whole number between 1000 and 1000000 "
                                        "(got -5)"]
    (huge,) = _errors({"steps": "10^12"})
    assert "between 1000 and 1000000" in huge and "1000000000000" in huge
    (lr,) = _errors({"lr": "0"})
    assert lr == "lr must be a number more than 0 and at most 1 (got 0)"


def test_text_where_a_number_belongs() -> None:
    (problem,) = _errors({"steps": "lots"})
    assert problem == "steps must be a whole number between 1000 and 1000000 (got 'lots')"
    (fraction,) = _errors({"steps": "1500.5"})
    assert "whole number" in fraction and "1500.5" in fraction


def test_unknown_env_lists_the_choices() -> None:
    (problem,) = _errors({"env": "CartPol-v1"})
    assert "env must be one of CartPole-v1, MountainCar-v0" in problem
    assert "did you mean CartPole-v1" in problem


def test_unknown_key_suggests_and_lists_valid_ones() -> None:
    (problem,) = _errors({"stpes": "100"})
    assert "unknown parameter 'stpes' for test.tool train" in problem
    assert "did you mean steps" in problem and "valid: seed, steps, env" in problem


def test_every_problem_is_reported_at_once() -> None:
    problems = _errors({"steps": "x", "lr": "5", "double": "maybe", "bogus": "1"})
    assert len(problems) == 4
    assert any(p.startswith("double must be yes or no") for p in problems)


def test_nlu_slots_keep_their_types_and_unknown_ones_can_be_dropped() -> None:
    slots = {"steps": 20_000, "env": "CartPole-v1", "algorithm": "dqn"}
    params = build_params(TrainParams, slots, ignore_unknown=True)
    assert params.steps == 20_000
    assert _errors(slots)  # strictly, "algorithm" is not a parameter


def test_split_assignments_rejects_bare_words_and_duplicates() -> None:
    with pytest.raises(ParamError, match="name=value"):
        split_assignments("steps=1 fast")
    with pytest.raises(ParamError, match="given twice"):
        split_assignments(["steps=1", "steps=2"])
    with pytest.raises(ParamError, match="could not read"):
        split_assignments('note="unclosed')
    assert split_assignments('note="two words" batch-size=4') == {"note": "two words",
                                                                 "batch_size": "4"}


def test_describe_params_is_generated_from_the_model() -> None:
    lines = describe_params(TrainParams)
    assert "steps: whole number, between 1000 and 1000000 (default 20000) — env steps" in lines
    assert "env: one of CartPole-v1, MountainCar-v0 (default CartPole-v1)" in lines


def _bad_values(info: Any) -> list[tuple[str, str]]:
    """Values that every bounded numeric or choice field of a real tool must reject."""
    kind, choices = _kind(info.annotation)
    limits = _limits(info)
    bad = []
    if choices:
        bad.append(("no-such-choice-xyz", "must be one of"))
    if kind in ("whole number", "number"):
        bad.append(("text", "must be a"))
        low = limits.get("ge", limits.get("gt"))
        if low is not None:
            bad.append((str(low - 10**9), "(got"))
        if "le" in limits or "lt" in limits:
            bad.append(("10^15", "(got"))
    return bad


def _real_fields() -> list[tuple[str, str, str, Any]]:
    cases = []
    for name, spec in load_tools().items():
        for command in spec.commands:
            for field, info in command.params.model_fields.items():
                inner, _ = _strip_optional(info.annotation)
                if get_args(inner) or inner in (int, float):
                    cases.append((name, command.name, field, info))
    return cases


@pytest.mark.parametrize(("tool", "command", "field", "info"), _real_fields(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_registered_tools_reject_bad_values_with_a_readable_message(
    tool: str, command: str, field: str, info: Any
) -> None:
    model = load_tools().get(tool).command(command).params
    for value, expected in _bad_values(info):
        problems = _errors({field: value}, model)
        assert any(p.startswith(f"{field} must be") and expected in p for p in problems), \
            (value, problems)
