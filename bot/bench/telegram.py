"""The Telegram channel under faults, full size: runs the ``slow`` scenario tests of
``tests/bot/channels/test_telegram_faults.py`` (the real bot process against the fake Bot API
server: 200 chats, ``kill -9``, a 60 s outage, answers that hang, a dead token), collects what
each scenario measured and writes ``docs/benchmarks/telegram.md``.

It needs a checkout (the scenarios and the fake server live under ``tests/``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCENARIOS = "tests/bot/channels/test_telegram_faults.py"
#: How the scenario tests hand over their outcomes (see ``telegram_scenarios.Outcome``).
RESULTS_ENV = "AMLBOT_BENCH_TELEGRAM_RESULTS"


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def run_scenarios(repo: Path, select: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Run the slow scenario tests under ``repo``; pytest's exit status and the outcomes."""
    if not (repo / SCENARIOS).is_file():
        raise FileNotFoundError(f"{repo / SCENARIOS} is missing: run this from a checkout")
    with tempfile.TemporaryDirectory(prefix="amlbot-bench-telegram-") as scratch:
        results = Path(scratch) / "outcomes.jsonl"
        command = [sys.executable, "-m", "pytest", "-q", "-m", "slow", "-p", "no:cacheprovider",
                   SCENARIOS, "-k", select or "test_bench"]
        env = {**os.environ, RESULTS_ENV: str(results)}
        code = subprocess.call(command, cwd=repo, env=env)
        outcomes = ([json.loads(line) for line in results.read_text().splitlines() if line]
                    if results.exists() else [])
    return code, outcomes


def _details(outcome: dict[str, Any]) -> str:
    details = dict(outcome.get("details") or {})
    shown = []
    for key in ("killed_after_s", "answered_before_kill", "outbox_uncertain",
                "restart_to_last_reply_s", "outage_s", "drained_after_outage_s",
                "refused_calls", "hang_s", "exit_status", "getUpdates_calls"):
        if key in details:
            shown.append(f"{key.replace('_', ' ')} {details[key]}")
    return "; ".join(shown)


def write_report(outcomes: list[dict[str, Any]], output: Path, command: str, *,
                 started: str, seconds: float, status: int) -> None:
    """The benchmark page: one row per scenario run, and how it was made."""
    rows = ["| scenario | chats | answered | lost | twice | s | details |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for outcome in outcomes:
        rows.append(
            f"| {outcome['scenario']} | {outcome['chats']} | {outcome['answered']} | "
            f"{outcome['lost']} | {outcome['duplicated']} | {outcome['seconds']:.1f} | "
            f"{_details(outcome)} |")
    errors = [line for o in outcomes for line in (o.get("details") or {}).get("error_lines", [])]
    page = [
        "# Telegram delivery under faults",
        "",
        "The real `amlbot telegram` process long-polls the fake Bot API server",
        "(`tests/support/fake_bot_api.py`) while faults are injected; every figure counts the",
        "messages the server really carried out, per chat (\"lost\": chats that never got",
        "their reply; \"twice\": chats that got it more than once). The scenarios are the `slow`",
        f"tests of `{SCENARIOS}`; smaller versions of each run in CI.",
        "",
        f"Command: `{command}` (pytest exit status {status}, {seconds:.0f} s in all).",
        f"Run {started} on {machine()}.",
        "",
        *rows,
        "",
        "\"outbox uncertain\" counts the replies that were on the wire when the bot was killed:",
        "they are not sent again (`AMLBOT_TELEGRAM_RESEND_UNCERTAIN=true` would send them",
        "again), so a chat could only miss its reply if the kill fell between recording a",
        "try and writing the request.",
    ]
    if errors:
        page += ["", "What a refused token logs at ERROR (the only ERROR line of the run):", ""]
        page += [f"    {line}" for line in errors]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(page) + "\n", encoding="utf-8")


def bench(repo: Path, output: Path, command: str, select: str | None = None,
          write: bool = True) -> tuple[int, list[dict[str, Any]]]:
    """Run the scenarios and (with ``write``) the page; pytest's status and the outcomes."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.monotonic()
    code, outcomes = run_scenarios(repo, select)
    if write and outcomes:
        write_report(outcomes, output, command, started=started,
                     seconds=time.monotonic() - began, status=code)
    return code, outcomes
