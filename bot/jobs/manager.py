"""The :class:`JobManager`: queues course-tool jobs, runs them on a backend, records everything.

One pump thread owns the backend. It starts queued jobs in two lanes, heavy commands (at most
``settings.max_concurrent_jobs`` at once) and light ones (``settings.max_light_jobs``), so a
long training never holds up a quick ``/faces``; within a lane the user with the fewest jobs
running goes first. It turns worker events into database rows and live
:class:`~bot.core.messages.ProgressHandle` updates (throttled), enforces cancellation (cooperative
first, then ``kill``), beats the heart of active jobs, and calls listeners when a job ends.
"""

from __future__ import annotations

import atexit
import builtins
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from bot.core.bus import Listeners
from bot.core.messages import ProgressHandle
from bot.jobs.records import (
    ACTIVE,
    SHUT_DOWN_QUEUED,
    SHUT_DOWN_RUNNING,
    JobInfo,
    JobRecords,
    owner_id,
)
from bot.settings import Settings
from bot.storage.store import Store

if TYPE_CHECKING:
    # The worker side (and with it course_tools) is imported when the first job is built:
    # not on the start path.
    from bot.jobs.worker import JobEvent, JobSpec
    from course_tools.base import InputFile
    from course_tools.invocation import ToolInvocation

log = logging.getLogger(__name__)

JobListener = Callable[[JobInfo], None]

#: Seconds a cancelled job gets to stop by itself before its worker is killed.
CANCEL_GRACE = 1.5
HEARTBEAT_EVERY = 5.0
RECOVER_EVERY = 60.0
UI_INTERVAL = 0.25
DB_INTERVAL = 1.0


class Backend(Protocol):
    """Where jobs run: ``local`` (spawned processes) or ``ray``."""

    name: str

    def start(self, spec: JobSpec) -> str: ...
    def cancel(self, job_id: str) -> None: ...
    def kill(self, job_id: str) -> None: ...
    def running(self) -> set[str]: ...
    def poll(self, timeout: float) -> list[JobEvent]: ...
    def close(self) -> None: ...


def make_backend(settings: Settings) -> Backend:
    """The backend ``settings.jobs_backend`` names."""
    if settings.jobs_backend == "ray":
        from bot.jobs.ray_backend import RayBackend

        return RayBackend(settings.ray_address)
    from bot.jobs.local import LocalBackend

    return LocalBackend()


def new_job_id() -> str:
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class _Queued:
    """What the pump needs to know of a job besides its spec."""

    chat_id: str | None
    user_id: str | None
    headline: str
    heavy: bool


class JobManager:
    """Submit, watch, cancel and list background jobs. Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        backend: Backend | None = None,
        recover: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.records = JobRecords(store, settings.data_dir.resolve() / "jobs")
        self._backend = backend
        self._owner = owner_id()
        self._lock = threading.RLock()
        self._pending: deque[str] = deque()
        self._specs: dict[str, JobSpec] = {}
        self._queued: dict[str, _Queued] = {}
        #: When each user's job last started (a count): the queue's round robin.
        self._served: dict[str | None, int] = {}
        self._starts = itertools.count()
        self._running: set[str] = set()
        self._handles: dict[str, ProgressHandle] = {}
        self._cancel_at: dict[str, float] = {}
        self._cancel_sent: set[str] = set()
        self._last_ui: dict[str, float] = {}
        self._last_db: dict[str, float] = {}
        self._listeners: Listeners[JobListener] = Listeners()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        #: Ids of jobs a dead bot left behind, failed by this manager at startup.
        self.recovered: list[str] = self.records.recover() if recover else []
        # Stop workers at exit. multiprocessing's own exit hook joins (waits for) running
        # workers; importing it first registers that hook first, so that ours runs before it.
        import multiprocessing.util  # noqa: F401

        atexit.register(self.close)
        if self.recovered:
            log.warning("marked %d orphaned job(s) failed: %s", len(self.recovered),
                        ", ".join(self.recovered))

    # --- public API -------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.settings)
        return self._backend

    def add_listener(self, listener: JobListener) -> Callable[[], None]:
        """Call ``listener(info)`` whenever a job of this manager ends; returns a remover."""
        return self._listeners.add(listener)

    def submit(
        self,
        invocation: ToolInvocation,
        chat_id: str | None = None,
        user_id: str | None = None,
        *,
        inputs: Sequence[InputFile] = (),
        readable_jobs: Sequence[str] = (),
    ) -> str:
        """Queue a validated tool call (see :mod:`course_tools.invocation`); returns the job id.

        ``inputs`` are the files sent with the request (a photo); ``readable_jobs`` the earlier
        jobs whose files the tool may open (``/play``: the caller checked they are the user's).
        The tool's memory for ``chat_id`` is read when the job starts and saved when it
        succeeds.
        """
        if self._closed:
            raise RuntimeError("the job manager is closed")
        spec = replace(self._new_job(invocation, chat_id, user_id, inputs),
                       readable_jobs=tuple(readable_jobs))
        job_id = spec.job_id
        handle = ProgressHandle(title=f"{invocation.title} · job {job_id}", id=f"job-{job_id}")
        with self._lock:
            self._pending.append(job_id)
            self._specs[job_id] = spec
            self._handles[job_id] = handle
            if self._waits(job_id):
                handle.update(0.0, f"queued (position {self._position(job_id)})")
            else:
                handle.update(0.0, "starting")
            self._ensure_thread()
        self._wake.set()
        return job_id

    def run_here(
        self,
        invocation: ToolInvocation,
        *,
        user_id: str = "cli",
        inputs: Sequence[InputFile] = (),
        on_progress: Callable[[float, str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> JobInfo:
        """Run a tool call in this process, recorded like any job (``amlbot tool run``)."""
        from bot.jobs.worker import execute

        spec = self._new_job(invocation, None, user_id, inputs)
        self.records.mark_running(spec.job_id, f"{self._owner}/here")

        def emit(event: JobEvent) -> None:
            if event[0] == "progress" and on_progress is not None:
                on_progress(float(event[2]), str(event[3]))

        self._end(execute(spec, emit, cancel or threading.Event()))
        info = self.records.get(spec.job_id)
        assert info is not None
        return info

    def _new_job(self, invocation: ToolInvocation, chat_id: str | None, user_id: str | None,
                 inputs: Sequence[InputFile]) -> JobSpec:
        """A job's row (queued) and its spec."""
        from bot.jobs.worker import JobSpec

        job_id = new_job_id()
        spec = JobSpec(
            job_id=job_id, tool=invocation.spec.name, command=invocation.command.name,
            params=invocation.params, work_dir=str(self.records.work_dir(job_id)),
            data_dir=str(self.settings.data_dir.resolve()),
            resources=invocation.command.resources, inputs=tuple(inputs),
        )
        self.records.create(job_id, spec.tool, spec.command,
                            invocation.params.model_dump(mode="json"), chat_id, user_id,
                            self._owner)
        with self._lock:
            self._queued[job_id] = _Queued(chat_id, user_id, invocation.spec.headline_metric,
                                           invocation.command.heavy)
        return spec

    def handle(self, job_id: str) -> ProgressHandle | None:
        """The live progress handle of a job this manager is running or queueing."""
        with self._lock:
            return self._handles.get(job_id)

    def status(self, job_id: str) -> JobInfo | None:
        """The job's row (with artifacts and queue position), or None if there is no such job."""
        info = self.records.get(job_id.strip().lower())
        if info is not None:
            self._add_position(info)
        return info

    def cancel(self, job_id: str) -> JobInfo | None:
        """Cancel a queued job at once, or ask a running one to stop (killed after a grace)."""
        job_id = job_id.strip().lower()
        finished_now = False
        with self._lock:
            if job_id in self._pending:
                self._pending.remove(job_id)
                finished_now = True
            elif job_id in self._running and job_id not in self._cancel_at:
                self._cancel_at[job_id] = time.monotonic()
                handle = self._handles.get(job_id)
                if handle is not None:
                    handle.update(handle.fraction, "cancelling…")
        if finished_now:
            self._finish(job_id, "cancelled", detail="cancelled before it started")
        self._wake.set()
        return self.status(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobInfo | None:
        """Block until the job has finished (or ``timeout`` passes); returns its latest state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.status(job_id)
            if info is None or info.finished:
                return info
            if deadline is not None and time.monotonic() > deadline:
                return info
            time.sleep(0.1)

    def active(self) -> set[str]:
        with self._lock:
            return set(self._pending) | set(self._running)

    def close(self, timeout: float = 3.0) -> None:
        """Stop the pump; running jobs get ``timeout`` s to finish cancelling, then are killed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending)
            self._pending.clear()
        atexit.unregister(self.close)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for job_id in pending:
            self._finish(job_id, "failed", error=SHUT_DOWN_QUEUED,
                         detail="the bot shut down")
        if self._running:
            backend = self.backend
            for job_id in list(self._running):
                backend.cancel(job_id)
            deadline = time.monotonic() + timeout
            while self._running and time.monotonic() < deadline:
                for event in backend.poll(0.2):
                    self._apply(event)
            for job_id in list(self._running):
                backend.kill(job_id)
                self._finish(job_id, "failed", error=SHUT_DOWN_RUNNING,
                             detail="the bot shut down")
        if self._backend is not None:
            self._backend.close()

    def list(self, chat_id: str | None = None, user_id: str | None = None,
             limit: int = 10) -> builtins.list[JobInfo]:
        """Recent jobs (newest first), optionally of one chat or user."""
        infos = self.records.query(chat_id=chat_id, user_id=user_id, limit=limit)
        for info in infos:
            self._add_position(info)
        return infos

    # --- the pump ---------------------------------------------------------------------------

    def _add_position(self, info: JobInfo) -> None:
        with self._lock:
            info.position = self._position(info.id)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._pump, name="amlbot-jobs", daemon=True)
            self._thread.start()

    def _pump(self) -> None:
        last_beat = last_recover = time.monotonic()
        while not self._stop.is_set():
            try:
                self._start_pending()
                self._enforce_cancels()
                if self._running:
                    events = self.backend.poll(0.1)
                else:
                    self._wake.wait(0.5)
                    self._wake.clear()
                    events = []
                for event in events:
                    self._apply(event)
                now = time.monotonic()
                if now - last_beat >= HEARTBEAT_EVERY:
                    last_beat = now
                    self.records.heartbeat(self.active())
                if now - last_recover >= RECOVER_EVERY:
                    last_recover = now
                    self._tell(self.records.recover())
            except Exception:  # noqa: BLE001 - the pump must survive a bad event or a DB hiccup
                log.exception("job pump error")
                time.sleep(0.5)

    def _capacity(self, heavy: bool) -> int:
        return self.settings.max_concurrent_jobs if heavy else self.settings.max_light_jobs

    def _free(self, heavy: bool) -> int:
        """Free places in a lane now."""
        running = sum(1 for j in self._running if self._queued[j].heavy == heavy)
        return max(0, self._capacity(heavy) - running)

    def _position(self, job_id: str) -> int | None:
        """A queued job's 1-based place among the queued jobs of its lane."""
        if job_id not in self._pending:
            return None
        heavy = self._queued[job_id].heavy
        lane = [j for j in self._pending if self._queued[j].heavy == heavy]
        return lane.index(job_id) + 1

    def _waits(self, job_id: str) -> bool:
        """Whether a queued job must wait: its lane is full up to it, or its chat is running
        a job of the same tool."""
        queued = self._queued[job_id]
        position = self._position(job_id) or 0
        busy = any(self._queued[j].chat_id == queued.chat_id
                   and self._specs[j].tool == self._specs[job_id].tool for j in self._running)
        return position > self._free(queued.heavy) or (queued.chat_id is not None and busy)

    def _next_startable(self) -> str | None:
        """The queued job to start now, if any: in a lane with a free place, not behind a job
        of the same tool running in its chat (a tool's memory for a chat is read at start and
        written at the end: one at a time), and of the user with the fewest jobs running,
        then the one served longest ago (round robin), then the first queued."""
        busy = {(self._queued[j].chat_id, self._specs[j].tool) for j in self._running}
        running_by_user: dict[str | None, int] = {}
        for job_id in self._running:
            user = self._queued[job_id].user_id
            running_by_user[user] = running_by_user.get(user, 0) + 1
        best: tuple[int, int, int, str] | None = None
        for order, job_id in enumerate(self._pending):
            queued = self._queued[job_id]
            if self._free(queued.heavy) == 0:
                continue
            if queued.chat_id is not None and (queued.chat_id, self._specs[job_id].tool) in busy:
                continue
            rank = (running_by_user.get(queued.user_id, 0),
                    self._served.get(queued.user_id, -1), order, job_id)
            if best is None or rank < best:
                best = rank
        return best[3] if best is not None else None

    def _start_pending(self) -> None:
        while True:
            with self._lock:
                job_id = self._next_startable()
                if job_id is None:
                    return
                self._pending.remove(job_id)
                self._served[self._queued[job_id].user_id] = next(self._starts)
                spec = self._specs[job_id]
                self._running.add(job_id)
                waiting = list(self._pending)
            chat_id = self._queued[job_id].chat_id
            if chat_id is not None:
                spec = replace(spec, memory=self.records.memory(chat_id, spec.tool))
            try:
                worker = self.backend.start(spec)
            except Exception as exc:  # noqa: BLE001 - e.g. Ray unreachable
                log.exception("could not start job %s", job_id)
                self._finish(job_id, "failed", error=f"could not start the job: {exc}",
                             detail="could not start")
                continue
            self.records.mark_running(job_id, f"{self._owner}/{worker}")
            handle = self.handle(job_id)
            if handle is not None:
                handle.update(0.0, f"running on {self.backend.name}")
            for other in waiting:
                other_handle = self.handle(other)
                with self._lock:
                    position = self._position(other)
                if other_handle is not None and position is not None:
                    other_handle.update(0.0, f"queued (position {position})")

    def _enforce_cancels(self) -> None:
        now = time.monotonic()
        with self._lock:
            requested = [(j, t) for j, t in self._cancel_at.items() if j in self._running]
        for job_id, asked_at in requested:
            if job_id not in self._cancel_sent:
                self._cancel_sent.add(job_id)
                self.backend.cancel(job_id)
            elif now - asked_at > CANCEL_GRACE:
                log.info("job %s ignored its cancel for %.1f s: killing it", job_id, CANCEL_GRACE)
                self.backend.kill(job_id)

    def _apply(self, event: JobEvent) -> None:
        kind, job_id = event[0], event[1]
        if job_id not in self._running:
            return
        if kind == "progress":
            fraction, detail = float(event[2]), str(event[3])
            now = time.monotonic()
            handle = self.handle(job_id)
            if handle is not None and (fraction >= 1.0 or
                                       now - self._last_ui.get(job_id, 0.0) >= UI_INTERVAL):
                self._last_ui[job_id] = now
                if job_id not in self._cancel_at:
                    handle.update(fraction, detail)
            if now - self._last_db.get(job_id, 0.0) >= DB_INTERVAL:
                self._last_db[job_id] = now
                self.records.update_progress(job_id, fraction, detail)
        elif kind == "done":
            self._end(event)
        elif kind in ("cancelled", "died") and self._closed and job_id not in self._cancel_at:
            self._finish(job_id, "failed", error=SHUT_DOWN_RUNNING, detail="the bot shut down")
        elif kind == "cancelled":
            self._finish(job_id, "cancelled", detail="cancelled")
        elif kind in ("failed", "died"):
            if job_id in self._cancel_at:
                self._finish(job_id, "cancelled", detail="cancelled (worker stopped)")
            else:
                self._finish(job_id, "failed", error=str(event[2]), detail="failed")

    def _tell(self, job_ids: Sequence[str]) -> None:
        """Give the listeners jobs that ended outside this manager's pump (recovered ones)."""
        listeners = self._listeners.snapshot()
        for job_id in job_ids:
            info = self.records.get(job_id)
            if info is None:
                continue
            for listener in listeners:
                try:
                    listener(info)
                except Exception:  # noqa: BLE001 - one broken listener must not stop the pump
                    log.exception("job listener failed for %s", job_id)

    def _end(self, event: JobEvent) -> None:
        """Record a worker's final event (done, failed or cancelled)."""
        kind, job_id = event[0], event[1]
        if kind == "done":
            self._finish(job_id, "done", payload=dict(event[2]))
        elif kind == "cancelled":
            self._finish(job_id, "cancelled", detail="cancelled")
        else:
            self._finish(job_id, "failed", error=str(event[2]), detail="failed")

    def _finish(self, job_id: str, status: str, *, payload: Mapping[str, Any] | None = None,
                error: str | None = None, detail: str = "") -> None:
        if status == "done":
            detail = self._summary(job_id, payload or {})
        elif status == "failed" and error:
            detail = f"failed: {error.splitlines()[0][:200]}"
        try:
            self.records.finish(job_id, status, detail=detail,
                                payload=dict(payload) if payload is not None else None,
                                error=error)
        except Exception:  # noqa: BLE001 - still tell the user; the row stays active for recovery
            log.exception("could not record the end of job %s", job_id)
        with self._lock:
            self._running.discard(job_id)
            self._specs.pop(job_id, None)
            self._queued.pop(job_id, None)
            self._cancel_at.pop(job_id, None)
            self._cancel_sent.discard(job_id)
            self._last_ui.pop(job_id, None)
            self._last_db.pop(job_id, None)
            handle = self._handles.pop(job_id, None)
            listeners = self._listeners.snapshot()
        info = self.records.get(job_id)
        if info is not None:
            for listener in listeners:
                try:
                    listener(info)
                except Exception:  # noqa: BLE001 - one broken listener must not stop the pump
                    log.exception("job listener failed for %s", job_id)
        if handle is not None:
            handle.finish(detail or status, failed=status != "done")

    def _summary(self, job_id: str, payload: Mapping[str, Any]) -> str:
        metrics = dict(payload.get("metrics") or {})
        queued = self._queued.get(job_id)
        headline = queued.headline if queued is not None else ""
        if headline and headline in metrics:
            return f"done: {headline} = {metrics[headline]:.4g} (/job {job_id})"
        return f"done (/job {job_id})"


__all__ = ["ACTIVE", "Backend", "JobInfo", "JobManager", "make_backend"]
