"""The job manager on the local backend, with real worker processes and a real database."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.messages import ProgressState
from bot.jobs import JobInfo, JobManager
from bot.jobs.records import pid_alive
from bot.settings import Settings
from bot.storage.models import Artifact, Job
from bot.storage.store import Store
from course_tools.params import ParamError
from tests.support.jobs import call, until

PI = "demo.montecarlo_pi"
SLOW = {"n": "1M", "pace": "0.1"}  # 50 batches × 0.1 s: about 5 s, cancellable at any time


@pytest.fixture()
def store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.resolved_database_url)
    yield store
    store.dispose()


@pytest.fixture()
def manager(settings: Settings, store: Store) -> Iterator[JobManager]:
    manager = JobManager(settings, store)
    yield manager
    manager.close()


def _status(manager: JobManager, job_id: str) -> JobInfo:
    info = manager.status(job_id)
    assert info is not None
    return info


def _child_pid(info: JobInfo) -> int:
    assert info.worker is not None
    return int(info.worker.rsplit(":", 1)[1])


def test_two_jobs_queue_progress_cancel_and_result(manager: JobManager, store: Store) -> None:
    ended: list[JobInfo] = []
    manager.add_listener(ended.append)
    slow = manager.submit(call(PI, "run", SLOW), "c1", "u1")
    until(lambda: _status(manager, slow).status == "running")  # so the next one is 1st in line
    fast = manager.submit(call(PI, "run", {"n": "50k", "seed": "7"}), "c1", "u1")
    # max_concurrent_jobs=1: the second waits, and says where it stands
    queued = manager.status(fast)
    assert queued is not None and queued.status == "queued" and queued.position == 1
    fast_handle = manager.handle(fast)
    assert fast_handle is not None and "queued (position 1)" in fast_handle.detail

    states: list[ProgressState] = []
    handle = manager.handle(slow)
    assert handle is not None
    handle.subscribe(states.append)
    until(lambda: handle.fraction >= 0.1)
    until(lambda: _status(manager, slow).progress > 0)  # the row follows, throttled
    running = _status(manager, slow)
    assert running.status == "running" and "points" in running.detail

    manager.cancel(slow)
    # "cancelled", not "done": the cancel stopped it (its wait bounds a cancel that never comes)
    cancelled = manager.wait(slow, timeout=10)
    assert cancelled is not None and cancelled.status == "cancelled"
    until(lambda: not pid_alive(_child_pid(cancelled)))  # the worker process is gone
    assert states[-1].done and states[-1].failed
    fractions = [s.fraction for s in states]
    assert fractions == sorted(fractions) and len(set(fractions)) >= 2  # it moved, throttled

    done = manager.wait(fast, timeout=60)
    assert done is not None and done.status == "done", done
    assert abs(done.metrics["pi_estimate"] - 3.14159) < 0.05
    assert done.params == {"seed": 7, "n": 50_000, "pace": 0.0}
    assert [info.id for info in ended] == [slow, fast]
    work_dir = manager.settings.data_dir.resolve() / "jobs" / fast
    (image,) = done.images
    assert image.path == work_dir / "montecarlo_pi.png"
    assert image.path.read_bytes().startswith(b"\x89PNG")
    assert {a.name for a in done.artifacts} == {"montecarlo_pi.png", "convergence.csv",
                                                "result.json"}
    with store.session() as session:
        assert session.query(Artifact).filter_by(job_id=fast).count() == 3
        assert session.get(Job, fast).finished_at is not None  # type: ignore[union-attr]
    assert [info.id for info in manager.list(chat_id="c1")] == [fast, slow]


def test_bad_parameters_start_nothing(manager: JobManager, store: Store) -> None:
    for params in ({"n": "-5"}, {"n": "10^12"}, {"n": "many"}, {"size": "5"}):
        with pytest.raises(ParamError):
            manager.submit(call(PI, "run", params), "c1", "u1")
    with pytest.raises(KeyError, match="no course tool"):
        manager.submit(call("demo.nothing", "run", {}), "c1", "u1")
    with pytest.raises(KeyError, match="has no command"):
        manager.submit(call(PI, "fly", {}), "c1", "u1")
    with store.session() as session:
        assert session.query(Job).count() == 0
    assert manager.active() == set()


def test_a_worker_that_dies_fails_its_job(manager: JobManager) -> None:
    job_id = manager.submit(call(PI, "run", SLOW), "c1", "u1")
    until(lambda: _status(manager, job_id).progress > 0)
    os.kill(_child_pid(_status(manager, job_id)), signal.SIGKILL)  # what the OOM killer would do
    failed = manager.wait(job_id, timeout=10)
    assert failed is not None and failed.status == "failed"
    assert failed.error == "the worker process died (signal 9)"


def test_cancel_a_queued_job_and_close_with_a_job_running(
    settings: Settings, store: Store
) -> None:
    manager = JobManager(settings, store)
    running = manager.submit(call(PI, "run", SLOW), "c1", "u1")
    queued = manager.submit(call(PI, "run", {}), "c1", "u1")
    info = manager.cancel(queued)
    assert info is not None and info.status == "cancelled"
    until(lambda: _status(manager, running).status == "running")
    child = _child_pid(_status(manager, running))
    manager.close()
    closed = manager.status(running)
    assert closed is not None and closed.status == "failed"
    assert closed.error == "the bot shut down while this job was running"
    until(lambda: not pid_alive(child))
    with pytest.raises(RuntimeError):
        manager.submit(call(PI, "run", {}), "c1", "u1")


def test_results_outlive_the_manager(settings: Settings, store: Store, tmp_path: Path) -> None:
    first = JobManager(settings, store)
    job_id = first.submit(call(PI, "run", {"n": "20k"}), "c1", "u1")
    first.wait(job_id, 60)
    assert _status(first, job_id).status == "done"
    first.close()
    later = JobManager(settings, Store(settings.resolved_database_url))
    info = later.status(job_id.upper())
    assert info is not None and info.status == "done" and info.metrics["points"] == 20_000
    assert info.images[0].path.is_file()
    assert later.recovered == []
    later.close()


def test_the_queue_is_fair_across_users(settings: Settings, store: Store) -> None:
    # One user's many light jobs must not push another user's job to the back.
    manager = JobManager(settings.model_copy(update={"max_light_jobs": 1}), store)
    try:
        flood = [manager.submit(call(PI, "run", {"n": "200k", "seed": str(i)}),
                                f"c{i}", "flooder") for i in range(3)]
        other = manager.submit(call(PI, "run", {"n": "20k"}), "c9", "other")
        ended = [manager.wait(job_id, timeout=120) for job_id in [*flood, other]]
        assert all(info is not None and info.status == "done" for info in ended)
        started = {info.id: info.started_at for info in ended if info is not None}
        # The other user's job ran second, right after the flood's first, not last.
        assert started[flood[0]] < started[other] < started[flood[1]] < started[flood[2]]
    finally:
        manager.close()


def test_a_chat_runs_one_job_of_a_tool_at_a_time(settings: Settings, store: Store) -> None:
    # A tool's memory for a chat is read at start and written at the end.
    manager = JobManager(settings.model_copy(update={"max_light_jobs": 2}), store)
    try:
        first = manager.submit(call(PI, "run", SLOW), "c1", "u1")
        second = manager.submit(call(PI, "run", {"n": "20k"}), "c1", "u1")
        elsewhere = manager.submit(call(PI, "run", {"n": "20k"}), "c2", "u2")
        assert (manager.wait(elsewhere, 60) or pytest.fail("gone")).status == "done"
        assert _status(manager, second).status == "queued"
        assert _status(manager, first).status == "running"
    finally:
        manager.close()
