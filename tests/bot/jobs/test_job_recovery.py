"""Crash recovery: jobs whose bot died are resolved at the next start, never left running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from bot.app import build_assistant
from bot.core import Message, Reply, TextReply
from bot.core.messages import ProgressEdit
from bot.jobs import JobManager
from bot.jobs.records import RESTARTED_QUEUED, RESTARTED_RUNNING, JobRecords, pid_alive
from bot.settings import Settings
from bot.storage.models import Job, utcnow
from bot.storage.store import Store

AMLBOT = Path(sys.executable).with_name("amlbot")


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_recover_fails_orphans_and_spares_live_owners(settings: Settings) -> None:
    store = Store(settings.resolved_database_url)
    records = JobRecords(store, settings.data_dir / "jobs")
    host = socket.gethostname()
    dead = f"{host}:{_dead_pid()}"
    records.create("dead-run", "demo.montecarlo_pi", "run", {}, "c", "u", dead)
    records.mark_running("dead-run", f"{dead}/local:{host}:1")
    records.create("dead-queue", "demo.montecarlo_pi", "run", {}, "c", "u", dead)
    records.create("alive", "demo.montecarlo_pi", "run", {}, "c", "u", f"{host}:{os.getpid()}")
    records.create("remote-fresh", "demo.montecarlo_pi", "run", {}, "c", "u", "elsewhere:1")
    records.create("remote-stale", "demo.montecarlo_pi", "run", {}, "c", "u", "elsewhere:2")
    with store.session() as session:
        stale = session.get(Job, "remote-stale")
        assert stale is not None
        stale.heartbeat_at = utcnow() - timedelta(minutes=10)

    manager = JobManager(settings, store)
    assert sorted(manager.recovered) == ["dead-queue", "dead-run", "remote-stale"]
    statuses = {j.id: (j.status, j.error) for j in records.query(limit=10)}
    assert statuses["dead-run"] == ("failed", RESTARTED_RUNNING)
    assert statuses["dead-queue"] == ("failed", RESTARTED_QUEUED)
    assert statuses["remote-stale"][0] == "failed"
    assert statuses["alive"] == ("queued", None)
    assert statuses["remote-fresh"] == ("queued", None)
    manager.close()
    store.dispose()


def test_kill_9_the_bot_mid_job_then_restart(settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "AMLBOT_DATA_DIR": str(settings.data_dir), "AMLBOT_NLU_ENABLED": "false"}
    bot = subprocess.Popen(
        [str(AMLBOT), "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env=env, cwd=tmp_path, text=True,
    )
    try:
        assert bot.stdin is not None and bot.stdout is not None
        bot.stdin.write("/run demo.montecarlo_pi n=2M pace=0.3\n")
        bot.stdin.flush()
        started = bot.stdout.readline()
        assert started.startswith("Started job "), started
        job_id = started.split()[2].rstrip(":")
        for line in bot.stdout:  # wait for real progress, so the job is mid-run
            if "points" in line:
                break
        os.kill(bot.pid, signal.SIGKILL)
        bot.wait(10)
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait()

    store = Store(settings.resolved_database_url)
    records = JobRecords(store, settings.data_dir / "jobs")
    orphan = records.get(job_id)
    assert orphan is not None and orphan.status == "running" and orphan.worker
    worker_pid = int(orphan.worker.rsplit(":", 1)[1])
    while pid_alive(worker_pid):  # the worker notices its bot is gone and stops by itself
        time.sleep(0.1)  # (a worker that kept running fails on the test's timeout)
    store.dispose()

    assistant = build_assistant(settings)  # the restart: its job manager resolves the orphan
    try:
        replies = assistant.handle(Message(chat_id="console", user_id="console",
                                           text=f"/job {job_id}"))
        text = "\n".join(r.text for r in replies if isinstance(r, TextReply))
        assert f"Job {job_id}" in text and f"failed: {RESTARTED_RUNNING}" in text

        # Once a channel attaches, the chat is told once, and its frozen progress message
        # (job-<id>) gets its last word.
        told: list[Reply] = []
        assistant.add_listener(lambda chat, got: told.extend(got) if chat == "console" else None)
        while not any(isinstance(r, ProgressEdit) for r in told):
            time.sleep(0.05)  # (never told: the test's timeout fails it)
        assert any(isinstance(r, TextReply) and f"failed: {RESTARTED_RUNNING}" in r.text
                   for r in told)
        (edit,) = [r for r in told if isinstance(r, ProgressEdit)]
        assert edit.progress_id == f"job-{job_id}" and "✗ stopped" in edit.text
        assistant.add_listener(lambda chat, got: told.extend(got))  # a second channel
        time.sleep(0.5)
        assert sum(isinstance(r, ProgressEdit) for r in told) == 1  # told once, not again
        listing = assistant.handle(Message(chat_id="console", user_id="console", text="/jobs"))
        assert f"{job_id}  demo.montecarlo_pi run  failed" in listing[0].text  # /jobs agrees
    finally:
        assistant.close()
