"""SIGKILL in the middle of a conversation loses no exchange the user already saw answered."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ACKNOWLEDGED = 25
IN_FLIGHT = 5


def _chat_command() -> list[str]:
    script = Path(sys.executable).with_name("amlbot")
    if script.is_file():
        return [str(script), "chat"]
    return [sys.executable, "-c", "from bot.cli.main import app; app()", "chat"]


class _Lines:
    """The lines a process prints, readable with a timeout."""

    def __init__(self, stream: object) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, token: str, timeout: float) -> str:
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"the chat exited before answering {token!r}")
            if token in line:
                return line


@pytest.mark.timeout(120)
def test_sigkill_mid_conversation_keeps_every_acknowledged_exchange(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = os.environ | {"AMLBOT_DATA_DIR": str(data_dir), "AMLBOT_NLU_ENABLED": "false",
                        "PYTHONUNBUFFERED": "1"}
    env.pop("AMLBOT_DATABASE_URL", None)
    process = subprocess.Popen(_chat_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
    assert process.stdin is not None and process.stdout is not None
    lines = _Lines(process.stdout)
    acknowledged: list[str] = []
    try:
        for i in range(ACKNOWLEDGED):
            # An unknown command gets a one-line reply that names it: our acknowledgement.
            token = f"/ack{i:03d}x"
            process.stdin.write(token + "\n")
            process.stdin.flush()
            assert token in lines.wait_for(token, timeout=60)
            acknowledged.append(token)
        for i in range(IN_FLIGHT):
            process.stdin.write(f"/late{i}\n")
        process.stdin.flush()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    database = data_dir / "amlbot.sqlite3"
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = connection.execute(
            "SELECT type, text FROM events WHERE chat_id = 'console' ORDER BY id").fetchall()
    finally:
        connection.close()
    messages = [text for kind, text in rows if kind == "message"]
    # Every acknowledged message, in order, each followed by its reply.
    assert messages[:ACKNOWLEDGED] == acknowledged
    for token in acknowledged:
        at = rows.index(("message", token))
        assert rows[at + 1][0] == "reply" and token in rows[at + 1][1]
    # Whatever was in flight is either fully there or absent, never half-written.
    assert set(messages[ACKNOWLEDGED:]) <= {f"/late{i}" for i in range(IN_FLIGHT)}

    # The database still opens for the next run, which sees the earlier conversation.
    after = subprocess.run(_chat_command(), input="/history 3\n", capture_output=True,
                           text=True, env=env, timeout=60)
    assert after.returncode == 0, after.stderr
    assert acknowledged[-1] in after.stdout or "/late" in after.stdout
