"""Bad parameters are rejected by the RL tools' parameter models (bounds, Literal envs)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from course_tools.base import ToolParams
from course_tools.params import ParamError, build_params
from course_tools.rl import SPECS
from course_tools.rl.cem import CEMParams
from course_tools.rl.common import PlayParams
from course_tools.rl.deep import A2CParams, DQNParams, ReinforceParams
from course_tools.rl.tabular import PlanningParams, TDParams

STEP_MODELS = [CEMParams, DQNParams, ReinforceParams, A2CParams]


@pytest.mark.parametrize("model", STEP_MODELS)
@pytest.mark.parametrize("steps", [-5, 0, 10**12, "many"])
def test_steps_out_of_range_or_not_a_number(model: type[ToolParams], steps: object) -> None:
    with pytest.raises(ValidationError):
        model.model_validate({"steps": steps})


@pytest.mark.parametrize("model", [*STEP_MODELS, PlanningParams, TDParams])
def test_unknown_env_and_unknown_keys(model: type[ToolParams]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate({"env": "MontezumaRevenge-v5"})
    with pytest.raises(ValidationError):
        model.model_validate({"stepz": 1000})


def test_other_bounds() -> None:
    td_bad: list[dict[str, object]] = [{"episodes": -1}, {"episodes": 10**12}, {"alpha": 0},
                                       {"epsilon": 2}, {"algorithm": "td-lambda"}]
    for bad in td_bad:
        with pytest.raises(ValidationError):
            TDParams.model_validate(bad)
    planning_bad: list[dict[str, object]] = [{"gamma": 1.5}, {"iterations": 0},
                                             {"eval_episodes": "ten"}]
    for bad in planning_bad:
        with pytest.raises(ValidationError):
            PlanningParams.model_validate(bad)
    with pytest.raises(ValidationError):
        PlayParams.model_validate({"job": "../../etc; rm -rf /"})
    with pytest.raises(ValidationError):
        CEMParams.model_validate({"seed": -1})


def test_cli_parser_rejects_with_readable_ranges() -> None:
    with pytest.raises(ParamError) as err:
        build_params(DQNParams, {"steps": "-5", "env": "Pong-v5", "lr": "fast"})
    text = " ".join(err.value.problems)
    assert "steps" in text and "env" in text and "lr" in text
    ok = build_params(DQNParams, {"steps": "20k"})
    assert ok.steps == 20_000


def test_every_rl_spec_is_declared_completely() -> None:
    names = {spec.name for spec in SPECS}
    assert names == {"rl.value_iteration", "rl.policy_iteration", "rl.qlearning", "rl.cem",
                     "rl.dqn", "rl.reinforce", "rl.a2c"}
    for spec in SPECS:
        commands = {c.name for c in spec.commands}
        assert "train" in commands and "play" in commands
        assert spec.headline_metric == "mean_reward" and spec.examples
