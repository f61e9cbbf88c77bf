"""The ``amlbot`` script: bad input files end in one ``error:`` line and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AMLBOT = Path(sys.executable).with_name("amlbot")


def _amlbot(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AMLBOT_DATA_DIR": str(data_dir)}
    return subprocess.run([str(AMLBOT), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_bad_input_files_get_one_line_and_status_2(tmp_path: Path) -> None:
    not_utf8 = tmp_path / "latin1.tsv"
    not_utf8.write_bytes(b"duplicate\tgrub \xff broken\tgrub rescue\n")
    short = tmp_path / "short.tsv"
    short.write_text("duplicate\tonly one title\n", encoding="utf-8")
    routes = tmp_path / "routes.tsv"
    routes.write_text("route\tdetail\ttext\nflying\t\thello\n", encoding="utf-8")
    model = tmp_path / "no-model"
    cases = [
        (["eval", "duplicates", "--data", str(not_utf8), "--model-dir", str(model)],
         f"error: {not_utf8}: not UTF-8 text"),
        (["eval", "duplicates", "--data", str(short), "--model-dir", str(model)],
         f"error: {short}:1: expected label, title1, title2"),
        (["eval", "intent", "--data", str(routes), "--model-dir", str(model)],
         f"error: {routes}:2: route must be one of"),
        (["eval", "intent", "--data", str(tmp_path / "missing.tsv"), "--model-dir", str(model)],
         "error: "),
    ]
    for args, expected in cases:
        result = _amlbot(*args, data_dir=tmp_path / "data")
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(expected), result.stderr


def test_verbose_keeps_the_traceback(tmp_path: Path) -> None:
    short = tmp_path / "short.tsv"
    short.write_text("duplicate\tonly one title\n", encoding="utf-8")
    result = _amlbot("--verbose", "eval", "duplicates", "--data", str(short), "--model-dir",
                     str(tmp_path / "m"), data_dir=tmp_path / "data")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "expected label, title1, title2" in result.stderr


def test_a_database_that_cannot_be_used_stops_the_start_in_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    (garbage / "amlbot.sqlite3").parent.mkdir(parents=True)
    (garbage / "amlbot.sqlite3").write_bytes(b"this is not a database header" * 100)
    directory = tmp_path / "directory"
    (directory / "amlbot.sqlite3").mkdir(parents=True)  # the database path is a directory
    for data_dir in (garbage, directory):
        env = {**os.environ, "AMLBOT_DATA_DIR": str(data_dir), "AMLBOT_NLU_ENABLED": "false"}
        result = subprocess.run([str(AMLBOT), "chat"], input="/start\n", capture_output=True,
                                text=True, env=env, timeout=120, check=False)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        (line,) = [li for li in result.stderr.splitlines() if li.startswith("error:")]
        assert "the database" in line and "cannot be used" in line


_WATCH_GC = """
import gc, sys
import bot.channels.console as console
import bot.settings as settings
from bot.cli.main import run

def report(where):
    print(f"{where}: collector {'on' if gc.isenabled() else 'off'}, "
          f"{'some' if gc.get_freeze_count() else 'nothing'} frozen", file=sys.stderr)

read = console.ConsoleChannel.run_script
def run_script(self, *args, **kwargs):
    report("chat reads input")
    return read(self, *args, **kwargs)
console.ConsoleChannel.run_script = run_script
get_settings = settings.get_settings
def reading_settings():
    report("settings read")
    return get_settings()
settings.get_settings = reading_settings
sys.argv = ["amlbot", *sys.argv[1:]]
try:
    run()
finally:
    report("after run")
"""


def test_the_collector_is_off_only_while_the_bot_starts(tmp_path: Path) -> None:
    """``amlbot`` turns the garbage collector off for its start (see bot.app.startup_over) and
    back on, with what the start made frozen, before the first message is read."""
    env = {**os.environ, "AMLBOT_DATA_DIR": str(tmp_path), "AMLBOT_NLU_ENABLED": "false"}
    chat = subprocess.run([sys.executable, "-c", _WATCH_GC, "chat"], input="/start\n",
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert chat.returncode == 0, chat.stderr
    assert "amlbot" in chat.stdout
    assert "chat reads input: collector on, some frozen" in chat.stderr
    assert "after run: collector on" in chat.stderr
    shown = subprocess.run([sys.executable, "-c", _WATCH_GC, "config", "show"],
                           capture_output=True, text=True, env=env, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    # Read twice: by the start (collector off), then by the command itself (on).
    assert shown.stderr.splitlines()[-2].startswith("settings read: collector on")
