"""``amlbot tool``: the list, parameter errors, and a synchronous run with --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from bot.cli.main import app
from bot.jobs.records import JobRecords
from bot.settings import Settings
from bot.storage.store import Store

AMLBOT = Path(sys.executable).with_name("amlbot")


def test_list_is_generated_from_the_declarations() -> None:
    result = CliRunner().invoke(app, ["tool", "list"])
    assert result.exit_code == 0, result.output
    assert "demo.montecarlo_pi  [demo]" in result.output
    assert "n: whole number, between 1000 and 5000000 (default 200000)" in result.output
    assert "sweep (heavy)" in result.output


def test_bad_parameters_exit_2_with_the_range() -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["tool", "run", "demo.montecarlo_pi", "--param", "n=-5"])
    assert bad.exit_code == 2
    assert "n must be a whole number between 1000 and 5000000 (got -5)" in bad.output
    assert runner.invoke(app, ["tool", "run", "demo.nothing"]).exit_code == 2
    assert runner.invoke(app, ["tool", "run", "demo.montecarlo_pi", "fly"]).exit_code == 2


def test_run_prints_metrics_and_ends_with_one_json_line(settings: Settings,
                                                         tmp_path: Path) -> None:
    env = {**os.environ, "AMLBOT_DATA_DIR": str(settings.data_dir)}
    done = subprocess.run(
        [str(AMLBOT), "tool", "run", "demo.montecarlo_pi", "-p", "n=50k", "-p", "seed=1",
         "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["headline"] == summary["abs_error"] < 0.05
    assert summary["points"] == 50_000
    assert "%" in done.stderr  # the progress bar goes to stderr, keeping stdout parseable
    (job,) = JobRecords(Store(settings.resolved_database_url), settings.data_dir).query()
    assert job.status == "done" and job.user_id == "cli" and job.metrics == {
        k: v for k, v in summary.items() if k != "headline"}
