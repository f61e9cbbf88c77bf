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


_INTRO = [
    "# Telegram delivery under faults",
    "",
    "The real `amlbot telegram` process long-polls the fake Bot API server",
    "(`tests/support/fake_bot_api.py`) while faults are injected; every figure counts the",
    "messages the server really carried out, per chat (\"lost\": chats that never got",
    "their reply; \"twice\": chats that got it more than once). The scenarios are the `slow`",
    f"tests of `{SCENARIOS}`; smaller versions of each run in CI. `amlbot bench telegram`",
    "writes the section of its configuration (a quiet machine, or `--busy N` CPU-bound",
    "processes running beside it) and keeps the others.",
    "",
    "\"outbox uncertain\" counts the replies whose request Telegram had got when the bot",
    "was killed, before it answered: they are not sent again",
    "(`AMLBOT_TELEGRAM_RESEND_UNCERTAIN=true` would send them again). A reply still pending",
    "at the kill is sent again after the restart; it arrives twice only when the kill fell",
    "between writing its request and recording that.",
]


def _marker(key: str, end: bool = False) -> str:
    return f"<!-- bench-telegram:{key}:{'end' if end else 'begin'} -->"


def section(outcomes: list[dict[str, Any]], command: str, *, title: str, started: str,
            seconds: float, status: int) -> list[str]:
    """One configuration's figures: one row per scenario run, and how they were made."""
    rows = ["| scenario | chats | answered | lost | twice | s | details |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for outcome in outcomes:
        rows.append(
            f"| {outcome['scenario']} | {outcome['chats']} | {outcome['answered']} | "
            f"{outcome['lost']} | {outcome['duplicated']} | {outcome['seconds']:.1f} | "
            f"{_details(outcome)} |")
    errors = [line for o in outcomes for line in (o.get("details") or {}).get("error_lines", [])]
    lines = [f"## {title}", "",
             f"Command: `{command}` (pytest exit status {status}, {seconds:.0f} s in all).",
             f"Run {started} on {machine()}, {os.getloadavg()[0]:.1f} at the end.", "", *rows]
    if errors:
        lines += ["", "What a refused token logs at ERROR (the only ERROR line of its run):", ""]
        lines += [f"    {line}" for line in errors]
    return lines


def write_report(output: Path, key: str, lines: list[str]) -> None:
    """Put ``lines`` into the page as the section ``key``, keeping the other sections."""
    text = output.read_text(encoding="utf-8") if output.exists() else ""
    begin, end = _marker(key), _marker(key, end=True)
    block = "\n".join([begin, *lines, end])
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        if not text.strip():
            text = "\n".join(_INTRO) + "\n"
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")


def bench(repo: Path, output: Path, command: str, *, select: str | None = None,
          busy: int = 0, write: bool = True) -> tuple[int, list[dict[str, Any]]]:
    """Run the scenarios (beside ``busy`` CPU-bound processes) and, with ``write``, their
    section of the page; pytest's status and the outcomes."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.monotonic()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(busy)]
    try:
        code, outcomes = run_scenarios(repo, select)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    if write and outcomes:
        title = (f"Beside {busy} CPU-bound process{'es' if busy > 1 else ''}" if busy
                 else "A quiet machine")
        key = f"busy{busy}" if busy else "quiet"
        write_report(output, key, section(outcomes, command, title=title, started=started,
                                          seconds=time.monotonic() - began, status=code))
    return code, outcomes
