"""Commands generated from declarations: the NLU components' train/eval, and the course tools'
evaluate/bench commands under their ``cli_name`` (``amlbot eval faces``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from course_tools import load_tools
from nlp_core.components import components


def _commands(*args: str) -> set[str]:
    """The command names a group's ``--help`` lists."""
    output = CliRunner().invoke(app, [*args, "--help"]).output
    return set(re.findall(r"^│ (\w+)\s", output, flags=re.MULTILINE))


def test_every_component_has_its_train_and_eval_commands() -> None:
    train, evaluate = _commands("train"), _commands("eval")
    for name, component in components.items():
        assert name in train
        assert (name in evaluate) == (component.evaluate is not None)


def test_tools_with_an_evaluation_get_eval_and_bench_commands() -> None:
    named = {spec.cli_name: spec for _, spec in load_tools().items() if spec.cli_name}
    assert "faces" in named and "caption" in named
    evaluate, bench = _commands("eval"), _commands("bench")
    for cli_name, spec in named.items():
        commands = [c.name for c in spec.commands]
        assert (cli_name in evaluate) == ("evaluate" in commands)
        assert (cli_name in bench) == ("bench" in commands)
    options = CliRunner().invoke(app, ["eval", "faces", "--help"]).output
    assert "--dataset" in options and "--enrolled" in options and "--json" in options


@pytest.mark.timeout(300)
def test_bench_faces_runs_the_tool_and_ends_with_json(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLBOT_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["bench", "faces", "--photos", "2", "--workers", "1",
                                      "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["faces_found"] == metrics["faces_placed"] == 2
    assert metrics["photos_per_s"] > 0
    bad = CliRunner().invoke(app, ["bench", "faces", "--photos", "-3"])
    assert bad.exit_code == 2 and "photos must be" in bad.output
