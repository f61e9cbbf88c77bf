"""``amlbot bench startup``: real cold starts of ``amlbot chat``, and the page it keeps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.bench.startup import percentile, write_report
from bot.cli.main import app


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 90) == 9.0
    assert percentile(values, 50) == 5.0
    assert percentile([3.0], 90) == 3.0


@pytest.mark.timeout(120)
def test_bench_startup_times_real_starts_and_updates_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMLBOT_NLU_ENABLED", "false")
    page = tmp_path / "startup.md"
    result = CliRunner().invoke(app, ["bench", "startup", "--runs", "2", "--json",
                                      "--output", str(page)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["configuration"] == "NLU off, sqlite" and summary["runs"] == 2
    assert 0 < summary["min_s"] <= summary["median_s"] <= summary["p90_s"] <= summary["max_s"]
    assert summary["first_run_s"] > 0
    assert all(run["first_line"].startswith("Hi") for run in summary["all_runs"])
    text = page.read_text()
    assert "| NLU off, sqlite | 2 |" in text
    assert "`AMLBOT_NLU_ENABLED=false amlbot bench startup --runs 2`" in text

    # Another configuration adds a row; re-measuring one replaces its row.
    from bot.bench.startup import StartupResult, StartupRun

    assert all(run["cpu_s"] > 0 for run in summary["all_runs"])
    runs = [StartupRun(r["first_reply_s"], r["exit_s"], r["first_line"], r["cpu_s"])
            for r in summary["all_runs"]]
    measured = StartupResult(summary["configuration"], "/start", runs[0], runs)
    write_report(dataclasses.replace(measured, configuration="NLU on, sqlite"), page, "cmd on")
    write_report(measured, page, "cmd off")
    rows = [line for line in page.read_text().splitlines() if line.startswith("| NLU")]
    assert len(rows) == 2
    assert rows[0].endswith("`cmd off` |") and rows[1].endswith("`cmd on` |")

    # What the page says below the table (a comparison, notes) survives a re-measurement.
    page.write_text(page.read_text() + "\n## Before and after\n\nA note.\n")
    write_report(measured, page, "cmd off again")
    text = page.read_text()
    assert text.endswith("\n## Before and after\n\nA note.\n")
    assert text.count("<!-- bench-startup:end -->") == 1 and "`cmd off again` |" in text
