"""Jobs and their artifacts in the database: the one place that reads and writes those rows."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from bot.storage.models import Artifact, Job, ToolMemory, utcnow
from bot.storage.store import Store

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")
RESTARTED_RUNNING = "the bot restarted while this job was running"
RESTARTED_QUEUED = "the bot restarted before this job could start"
SHUT_DOWN_RUNNING = "the bot shut down while this job was running"
SHUT_DOWN_QUEUED = "the bot shut down before this job could start"

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".csv": "text/csv",
         ".json": "application/json", ".txt": "text/plain", ".npz": "application/octet-stream"}
_MODEL_SUFFIXES = {".pt", ".pth", ".npz", ".npy", ".joblib", ".pkl", ".zip", ".onnx"}


@dataclass(frozen=True)
class ArtifactInfo:
    """A file a job produced."""

    kind: str
    name: str
    path: Path
    mime_type: str | None


@dataclass
class JobInfo:
    """A job as the bot shows it (a detached copy of the row, plus its queue position)."""

    id: str
    tool: str
    command: str
    params: dict[str, Any]
    status: str
    chat_id: str | None
    user_id: str | None
    progress: float
    detail: str
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    position: int | None = None  # 1-based place in this bot's queue, while queued

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def metrics(self) -> dict[str, float]:
        return dict((self.result or {}).get("metrics") or {})

    @property
    def images(self) -> list[ArtifactInfo]:
        return [a for a in self.artifacts if a.kind == "image"]

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (_aware(self.finished_at) - _aware(self.started_at)).total_seconds()


def _aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def owner_id() -> str:
    """Who tends a job: ``<host>:<pid>`` of this bot process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (on Windows: assumed, heartbeats decide)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_dead(worker: str | None) -> bool:
    """True when ``worker`` names a process on this host that no longer exists."""
    if not worker:
        return False
    owner = worker.split("/", 1)[0]
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not pid_alive(int(pid))


def artifact_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".png", ".gif", ".jpg", ".jpeg"):
        return "image"
    if suffix in _MODEL_SUFFIXES:
        return "model"
    if suffix == ".json":
        return "metrics"
    return "document"


class JobRecords:
    """Reads and writes ``jobs`` and ``artifacts`` rows through a :class:`Store`."""

    def __init__(self, store: Store, jobs_dir: Path) -> None:
        self.store = store
        self.jobs_dir = jobs_dir

    def work_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def create(self, job_id: str, tool: str, command: str, params: dict[str, Any],
               chat_id: str | None, user_id: str | None, worker: str) -> None:
        now = utcnow()
        with self.store.session() as session:
            session.add(Job(id=job_id, tool=tool, command=command, params=params,
                            status="queued", chat_id=chat_id, user_id=user_id, progress=0.0,
                            detail="queued", created_at=now, heartbeat_at=now, worker=worker))

    def mark_running(self, job_id: str, worker: str) -> None:
        now = utcnow()
        with self.store.session() as session:
            job = session.get(Job, job_id)
            if job is not None and job.status == "queued":
                job.status, job.started_at, job.heartbeat_at = "running", now, now
                job.worker, job.detail = worker[:128], "starting"

    def update_progress(self, job_id: str, fraction: float, detail: str) -> None:
        with self.store.session() as session:
            job = session.get(Job, job_id)
            if job is not None and job.status == "running":
                job.progress, job.detail, job.heartbeat_at = fraction, detail[:500], utcnow()

    def heartbeat(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if not ids:
            return
        now = utcnow()
        with self.store.session() as session:
            for job in session.scalars(select(Job).where(Job.id.in_(ids))):
                if job.status in ACTIVE:
                    job.heartbeat_at = now

    def finish(self, job_id: str, status: str, *, detail: str = "",
               payload: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Record a job's end; a ``done`` payload's files become artifact rows."""
        work_dir = self.work_dir(job_id)
        artifacts: list[Artifact] = []
        result: dict[str, Any] | None = None
        memory: dict[str, Any] | None = None
        if payload is not None:
            memory = payload.pop("memory", None)
            files = payload.pop("files", None) or {}
            for relative, data in files.items():  # shipped back from a remote worker
                target = work_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.write_bytes(data)
            result = payload
            work_dir.mkdir(parents=True, exist_ok=True)
            (work_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
            names = [(name, name) for name in payload.get("images", [])]
            names += list(payload.get("artifacts", {}).items())
            names.append(("result.json", "result.json"))
            for name, relative in names:
                path = (work_dir / relative).resolve()
                artifacts.append(Artifact(job_id=job_id, kind=artifact_kind(path), name=name,
                                          path=str(path),
                                          mime_type=_MIME.get(path.suffix.lower())))
        with self.store.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.status in FINISHED:
                return
            now = utcnow()
            job.status, job.finished_at, job.heartbeat_at = status, now, now
            job.detail = detail[:500]
            if status == "done":
                job.progress = 1.0
            job.result, job.error = result, error
            session.add_all(artifacts)
            if memory is not None and status == "done" and job.chat_id is not None:
                row = session.get(ToolMemory, (job.chat_id, job.tool))
                if row is None:
                    session.add(ToolMemory(chat_id=job.chat_id, tool=job.tool, data=memory))
                else:
                    row.data, row.updated_at = memory, now

    def forget_user(self, user_id: str) -> int:
        """Delete ``user_id``'s jobs that have ended, with their rows and files; returns how
        many (a job still running is left alone: cancel it first)."""
        return self._delete(select(Job.id).where(Job.user_id == user_id,
                                                 Job.status.in_(FINISHED)))

    def forget_before(self, cutoff: datetime) -> int:
        """Delete the jobs that ended before ``cutoff``, with their files; returns how many."""
        return self._delete(select(Job.id).where(Job.status.in_(FINISHED),
                                                 Job.finished_at < cutoff))

    def _delete(self, ids_query: Any) -> int:
        with self.store.session() as session:
            ids = list(session.scalars(ids_query))
            if ids:
                session.execute(delete(Artifact).where(Artifact.job_id.in_(ids)))
                session.execute(delete(Job).where(Job.id.in_(ids)))
        for job_id in ids:
            shutil.rmtree(self.work_dir(job_id), ignore_errors=True)
        return len(ids)

    def mark_announced(self, job_id: str) -> None:
        with self.store.session() as session:
            job = session.get(Job, job_id)
            if job is not None:
                job.announced = True

    def unannounced(self, within: timedelta = timedelta(hours=24)) -> list[JobInfo]:
        """Jobs of a chat that ended in the last ``within`` without their chat being told
        (the bot crashed, or stopped, or no channel was attached), oldest first."""
        since = utcnow() - within
        query = (select(Job).where(Job.status.in_(FINISHED), Job.announced.is_(False),
                                   Job.chat_id.is_not(None), Job.finished_at >= since)
                 .order_by(Job.finished_at))
        with self.store.session() as session:
            return [_info(job, ()) for job in session.scalars(query)]

    def count_active(self, user_id: str) -> int:
        """Jobs of ``user_id`` queued or running, in any bot process."""
        with self.store.session() as session:
            return int(session.scalar(select(func.count()).select_from(Job).where(
                Job.user_id == user_id, Job.status.in_(ACTIVE))) or 0)

    def memory(self, chat_id: str, tool: str) -> dict[str, Any]:
        """What ``tool`` remembers for ``chat_id`` (empty when nothing yet)."""
        with self.store.session() as session:
            row = session.get(ToolMemory, (chat_id, tool))
            return dict(row.data) if row is not None else {}

    def get(self, job_id: str) -> JobInfo | None:
        with self.store.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                return None
            rows = session.scalars(select(Artifact).where(Artifact.job_id == job_id)
                                   .order_by(Artifact.id)).all()
            return _info(job, rows)

    def query(self, *, chat_id: str | None = None, user_id: str | None = None,
             statuses: Iterable[str] | None = None, limit: int = 20) -> list[JobInfo]:
        """Newest first."""
        query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
        if chat_id is not None:
            query = query.where(Job.chat_id == chat_id)
        if user_id is not None:
            query = query.where(Job.user_id == user_id)
        if statuses is not None:
            query = query.where(Job.status.in_(list(statuses)))
        with self.store.session() as session:
            return [_info(job, ()) for job in session.scalars(query)]

    def count_since(self, user_id: str, since: datetime,
                    counts: Callable[[str, str], bool]) -> int:
        """Jobs ``user_id`` started since ``since`` for which ``counts(tool, command)`` holds."""
        with self.store.session() as session:
            rows = session.execute(select(Job.tool, Job.command).where(
                Job.user_id == user_id, Job.created_at >= since)).all()
        return sum(1 for tool, command in rows if counts(tool, command))

    def recover(self, stale_after: float = 120.0) -> list[str]:
        """Resolve jobs whose bot process died: fail them with a clear reason; returns their ids.

        A queued or running job is orphaned when the process tending it (``worker`` starts with
        ``<host>:<pid>``) is gone from this host, or when nobody touched its heartbeat for
        ``stale_after`` seconds (a bot on another host that died).
        """
        cutoff = utcnow() - timedelta(seconds=stale_after)
        resolved = []
        with self.store.session() as session:
            for job in session.scalars(select(Job).where(Job.status.in_(ACTIVE))):
                beat = job.heartbeat_at or job.created_at
                if not (_owner_dead(job.worker) or _aware(beat) < cutoff):
                    continue
                reason = RESTARTED_RUNNING if job.status == "running" else RESTARTED_QUEUED
                job.status, job.error, job.finished_at = "failed", reason, utcnow()
                job.detail = reason
                resolved.append(job.id)
        return resolved


def _info(job: Job, artifacts: Iterable[Artifact]) -> JobInfo:
    return JobInfo(
        id=job.id, tool=job.tool, command=job.command, params=dict(job.params or {}),
        status=job.status, chat_id=job.chat_id, user_id=job.user_id,
        progress=float(job.progress or 0.0), detail=job.detail or "", result=job.result,
        error=job.error, created_at=_aware(job.created_at),
        started_at=_aware(job.started_at) if job.started_at else None,
        finished_at=_aware(job.finished_at) if job.finished_at else None,
        heartbeat_at=_aware(job.heartbeat_at) if job.heartbeat_at else None,
        worker=job.worker,
        artifacts=[ArtifactInfo(a.kind, a.name, Path(a.path), a.mime_type) for a in artifacts],
    )
