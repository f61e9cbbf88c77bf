"""The course-tool registry: what is registered is pinned, and every declaration is usable."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from course_tools import TOOL_MODULES, load_errors, load_tools
from course_tools.base import ToolParams

# Update this list when a tool is added or removed (like spaCy's registry snapshot).
EXPECTED_TOOLS = [
    "bayes.bo",
    "bayes.em",
    "bayes.gp",
    "bayes.lda",
    "bayes.mcmc",
    "bayes.vae",
    "compete.flights",
    "compete.rdataset",
    "demo.montecarlo_pi",
    "lhc.hzz",
    "lhc.pid",
    "lhc.tau3mu",
    "lhc.tracking",
    "lhc.zmumu",
    "rl.a2c",
    "rl.cem",
    "rl.dqn",
    "rl.policy_iteration",
    "rl.qlearning",
    "rl.reinforce",
    "rl.value_iteration",
    "vision.caption",
    "vision.faces",
]


def test_registered_tools_snapshot() -> None:
    registry = load_tools()
    assert registry.names() == EXPECTED_TOOLS
    assert load_errors == {}, f"tool modules failed to import: {load_errors}"


def test_every_tool_module_is_listed_once() -> None:
    assert len(set(TOOL_MODULES)) == len(TOOL_MODULES)
    assert "course_tools.demo" in TOOL_MODULES


@pytest.mark.parametrize("name", EXPECTED_TOOLS)
def test_declaration_is_complete(name: str) -> None:
    spec = load_tools().get(name)
    assert re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", spec.name)
    assert spec.name.split(".")[0] == spec.course
    assert spec.summary and spec.commands
    assert len({c.name for c in spec.commands}) == len(spec.commands)
    for command in spec.commands:
        assert issubclass(command.params, ToolParams) and command.help
        # extra="forbid": a typo never silently becomes a default
        with pytest.raises(ValidationError):
            command.params.model_validate({"no_such_parameter": 1})
    # the headline metric is what `amlbot tool run --json` reports as "headline"
    assert spec.headline_metric
