"""Cold start: wall time from spawning ``amlbot chat`` to its first reply on stdout.

Each run is a fresh process with "/start" piped into stdin, so it pays every import, the settings,
opening (and, on the first run, migrating) the database and building the skills; exactly what a
user waits for after typing ``amlbot chat``.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The acceptance target of the console channel: the first reply within 2 s.
TARGET_S = 2.0
_BEGIN, _END = "<!-- bench-startup:begin -->", "<!-- bench-startup:end -->"


@dataclass
class StartupRun:
    """One process: seconds to its first stdout line and to its exit, that line, and the CPU
    seconds (user + system) the process used in all, which contention on a busy machine
    inflates far less than wall time."""

    first_reply_s: float
    exit_s: float
    first_line: str
    cpu_s: float = 0.0


@dataclass
class StartupResult:
    """Every timed run of one configuration, and the untimed-for-stats first run."""

    configuration: str
    message: str
    first_run: StartupRun
    runs: list[StartupRun] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    machine: str = field(default_factory=lambda: (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}"
    ))

    @property
    def times(self) -> list[float]:
        return [run.first_reply_s for run in self.runs]

    def summary(self) -> dict[str, Any]:
        """Median, p90 and max of the time to the first reply, in seconds, as a plain dict."""
        times = self.times
        return {
            "benchmark": "startup",
            "configuration": self.configuration,
            "message": self.message,
            "runs": len(times),
            "median_s": round(statistics.median(times), 4),
            "p90_s": round(percentile(times, 90), 4),
            "max_s": round(max(times), 4),
            "min_s": round(min(times), 4),
            "exit_median_s": round(statistics.median(r.exit_s for r in self.runs), 4),
            "cpu_median_s": round(statistics.median(r.cpu_s for r in self.runs), 4),
            "first_run_s": round(self.first_run.first_reply_s, 4),
            "target_s": TARGET_S,
            "under_target": percentile(times, 90) < TARGET_S,
            "created": self.created,
            "machine": self.machine,
        }

    def to_dict(self) -> dict[str, Any]:
        return self.summary() | {"all_runs": [asdict(run) for run in self.runs]}


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile (p90 of 10 runs is the 9th fastest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def chat_command() -> list[str]:
    """How to start ``amlbot chat`` with the running interpreter's environment."""
    script = Path(sys.executable).with_name("amlbot")
    if script.is_file():
        return [str(script), "chat"]
    return [sys.executable, "-c", "from bot.cli.main import app; app()", "chat"]


def time_one_start(
    env: dict[str, str], message: str = "/start", timeout: float = 60.0
) -> StartupRun:
    """Start ``amlbot chat``, pipe ``message`` in, and time its first stdout line and exit."""
    import resource

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    with tempfile.TemporaryFile() as stderr:
        cpu_before = children_cpu()
        started = time.perf_counter()
        process = subprocess.Popen(
            chat_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            env=env,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(message.encode("utf-8") + b"\n")
            process.stdin.close()
            line = process.stdout.readline()
            first_reply = time.perf_counter() - started
            process.stdout.read()
            process.wait(timeout=timeout)
            exited = time.perf_counter() - started
            cpu = children_cpu() - cpu_before
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if not line.strip() or process.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(
                f"`amlbot chat` gave no reply (exit code {process.returncode}): "
                f"{stderr.read().decode('utf-8', 'replace')[-2000:]}"
            )
    return StartupRun(first_reply, exited, line.decode("utf-8", "replace").strip(), cpu)


def describe_configuration(env: dict[str, str]) -> str:
    """A short label of what changes start-up time: NLU on or off, and the database backend."""
    nlu = env.get("AMLBOT_NLU_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off")
    url = env.get("AMLBOT_DATABASE_URL") or "sqlite"
    backend = url.split(":", 1)[0].split("+", 1)[0]
    return f"NLU {'on' if nlu else 'off'}, {backend}"


def measure_startup(
    runs: int = 10,
    message: str = "/start",
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> StartupResult:
    """Time ``runs`` cold starts after one first run that creates the data dir and database.

    Without ``data_dir`` a temporary one is used (and removed), so the numbers never depend on
    what a developer's own data dir holds.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    base_env = dict(os.environ if env is None else env)
    scratch = None
    if data_dir is None:
        scratch = tempfile.mkdtemp(prefix="amlbot-bench-startup-")
        data_dir = Path(scratch)
    base_env["AMLBOT_DATA_DIR"] = str(data_dir)
    try:
        first = time_one_start(base_env, message)
        result = StartupResult(describe_configuration(base_env), message, first)
        for _ in range(runs):
            result.runs.append(time_one_start(base_env, message))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return result


def write_report(result: StartupResult, path: Path, command: str) -> None:
    """Add or update this configuration's row in the startup page (other rows are kept)."""
    s = result.summary()
    row = (
        f"| {s['configuration']} | {s['runs']} | {s['median_s']:.3f} | {s['p90_s']:.3f} | "
        f"{s['max_s']:.3f} | {s['first_run_s']:.3f} | {s['cpu_median_s']:.3f} | "
        f"{'yes' if s['under_target'] else 'NO'} | "
        f"{s['created'][:10]} | {s['machine']} | `{command}` |"
    )
    rows: dict[str, str] = {}
    after = "\n"  # what the page says below the table (comparisons, notes) is kept
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        if _BEGIN in old and _END in old:
            after = old.split(_END, 1)[1] or after
            table = old.split(_BEGIN, 1)[1].split(_END, 1)[0]
            for line in table.splitlines():
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                header_or_rule = cells[0] == "configuration" or set(cells[0]) <= set("-: ")
                if line.startswith("| ") and not header_or_rule:
                    rows[cells[0]] = line
    rows[s["configuration"]] = row
    header = (
        "| configuration | runs | median s | p90 s | max s | first run s | CPU median s "
        "| p90 < 2 s | date | machine | command |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    text = (
        "# Cold start to the first console reply\n\n"
        "Wall time from spawning a fresh `amlbot chat` process, with `/start` piped into its "
        "stdin, to the first line of its reply on stdout: every import, reading the settings, "
        "opening the database and building the skills. The target is under "
        f"{TARGET_S:g} s. *first run* is the untimed-for-stats run on an empty data dir (it "
        "creates the SQLite database and runs the migrations); the statistics are over the "
        "runs after it. The machine column ends with the 1-minute load average when the row "
        "was measured: on a busy shared machine the wall times are inflated by contention. "
        "*CPU median* is the CPU time (user + system) of the whole process, start to exit; "
        "contention inflates it far less, so it bounds what an idle machine would show.\n\n"
        "Regenerate a row with the command in its last column "
        "(`amlbot bench startup --help` lists the options).\n\n"
        f"{_BEGIN}\n{header}" + "\n".join(rows[k] for k in sorted(rows)) + f"\n{_END}"
        + after
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
