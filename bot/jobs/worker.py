"""What runs inside a job's worker (a spawned process or a Ray task): one tool command.

:func:`execute` is backend-neutral: it resolves the tool, runs it with a :class:`ToolContext`
wired to ``emit`` (progress events) and ``cancel`` (anything with ``is_set()``), saves the images
into the job's work dir, and returns the final event. Events are plain tuples so they pickle
anywhere: ``("progress", job_id, fraction, detail)``, ``("done", job_id, payload)``,
``("failed", job_id, message)`` and ``("cancelled", job_id, detail)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.data import DataCatalogue
from course_tools import load_tools
from course_tools.base import (
    InputFile,
    JobCancelled,
    Resources,
    ToolContext,
    ToolInputError,
    ToolParams,
    serial_map,
)

log = logging.getLogger(__name__)

JobEvent = tuple[Any, ...]
Emit = Callable[[JobEvent], None]

#: Seconds between two progress events a worker sends (the last one always goes).
PROGRESS_INTERVAL = 0.2
#: Files larger than this are not shipped back from remote workers.
MAX_SHIPPED_BYTES = 64 * 1024 * 1024


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one job. It pickles to any backend: the parameters
    travel as the validated model, so the worker never reads them again."""

    job_id: str
    tool: str
    command: str
    params: ToolParams
    work_dir: str
    data_dir: str
    resources: Resources = Resources()
    inputs: tuple[InputFile, ...] = ()
    #: The tool's memory for this job's chat (None: the job has no chat).
    memory: dict[str, Any] | None = None
    #: Earlier jobs whose work dirs the tool may open (None: any, for the operator's CLI).
    readable_jobs: tuple[str, ...] | None = None


class AnyFlag:
    """Set when any of its flags is set (the job's cancel event, or "my parent died")."""

    def __init__(self, *flags: CancelFlag) -> None:
        self.flags = flags

    def is_set(self) -> bool:
        return any(flag.is_set() for flag in self.flags)


def safe_name(name: str) -> str:
    """A file name that stays inside the work dir."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._")
    return cleaned[:120] or "file"


FanOut = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


def execute(
    spec: JobSpec, emit: Emit, cancel: CancelFlag, *, ship_files: bool = False,
    fan_out: FanOut = serial_map,
) -> JobEvent:
    """Run ``spec`` and return its final event (never raises)."""

    job_id = spec.job_id
    data_dir = Path(spec.data_dir)
    memory = dict(spec.memory or {})
    try:
        limit_threads(spec.resources.cpus)
        command = load_tools().get(spec.tool).command(spec.command)
        work_dir = Path(spec.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        last = [0.0]

        def progress(fraction: float, detail: str) -> None:
            now = time.monotonic()
            if fraction >= 1.0 or now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                emit(("progress", job_id, float(fraction), str(detail)[:300]))

        ctx = ToolContext(params=spec.params, work_dir=work_dir, progress=progress,
                          cancel_event=cancel, data_dir=data_dir,
                          data=DataCatalogue(data_dir), inputs=spec.inputs, memory=memory,
                          find_job=lambda other: _job_dir(spec, other), fan_out=fan_out)
        ctx.check_cancelled()
        result = command.func(ctx)
        ctx.check_cancelled()
    except JobCancelled:
        return ("cancelled", job_id, "cancelled")
    except ToolInputError as exc:  # the user's input, not a bug: no trace in the log
        return ("failed", job_id, str(exc)[:1000])
    except BaseException as exc:  # noqa: BLE001 - a tool's failure is the job's result
        if isinstance(exc, KeyboardInterrupt | SystemExit) and cancel.is_set():
            return ("cancelled", job_id, "cancelled")
        log.exception("job %s failed", job_id)
        trace = "".join(traceback.format_exception(exc)[-3:])
        return ("failed", job_id, f"{type(exc).__name__}: {exc}"[:1000], trace[-2000:])
    try:
        payload = _payload(result, work_dir, job_id, ship_files)
        if spec.memory is not None and _json(memory) != _json(spec.memory):
            payload["memory"] = json.loads(_json(memory))
    except Exception as exc:  # noqa: BLE001 - e.g. a tool returned a non-numeric metric
        return ("failed", job_id, f"could not save the results: {type(exc).__name__}: {exc}")
    return ("done", job_id, payload)


def _job_dir(spec: JobSpec, other: str) -> Path:
    """The work dir of an earlier job the tool may open (``ctx.find_job``)."""
    if spec.readable_jobs is not None and other not in spec.readable_jobs:
        raise ToolInputError(f"There is no job {other} of yours. /jobs lists them.")
    return Path(spec.data_dir) / "jobs" / other


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


def limit_threads(cpus: float) -> None:
    """Keep the job's math libraries to the cores its command declared (at least one)."""
    threads = str(max(1, int(cpus)))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = threads  # for libraries the tool has yet to load
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(int(threads))


def _payload(result: Any, work_dir: Path, job_id: str, ship_files: bool) -> dict[str, Any]:
    images = []
    for filename, data in result.images:
        name = safe_name(filename)
        (work_dir / name).write_bytes(data)
        images.append(name)
    artifacts: dict[str, str] = {}
    for name, path in result.artifacts.items():
        path = Path(path)
        if not path.is_absolute():
            path = work_dir / path
        try:
            relative = path.resolve().relative_to(work_dir.resolve())
        except ValueError:  # outside the work dir: copy it in, so the job owns its files
            relative = Path(safe_name(path.name))
            (work_dir / relative).write_bytes(path.read_bytes())
        artifacts[str(name)] = str(relative)
    follow_up = result.follow_up
    if follow_up:
        follow_up = follow_up.replace("<job id>", job_id).replace("{job_id}", job_id)
    payload: dict[str, Any] = {
        "text": str(result.text),
        "metrics": {str(k): float(v) for k, v in result.metrics.items()},
        "images": images,
        "artifacts": artifacts,
        "follow_up": follow_up,
    }
    if ship_files:
        files: dict[str, bytes] = {}
        total = 0
        for shipped in [*images, *artifacts.values()]:
            source = work_dir / shipped
            if source.is_file() and total + source.stat().st_size <= MAX_SHIPPED_BYTES:
                files[shipped] = source.read_bytes()
                total += len(files[shipped])
        payload["files"] = files
    return payload


def watch_parent(flag: threading.Event, grace: float = 10.0) -> None:
    """In a spawned worker: when the bot process dies, cancel the job, and exit if it ignores that.

    A worker must never outlive the process that tends it (``kill -9`` of the bot included).
    """
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def loop() -> None:
        while parent.is_alive():
            time.sleep(0.25)
        flag.set()
        time.sleep(grace)
        os._exit(3)

    threading.Thread(target=loop, name="amlbot-parent-watch", daemon=True).start()


def child_main(spec: JobSpec, conn: Any, cancel_event: Any) -> None:
    """Entry point of a local worker process: run the job, stream events through ``conn``."""
    parent_gone = threading.Event()
    watch_parent(parent_gone)
    lock = threading.Lock()

    def emit(event: JobEvent) -> None:
        with lock:
            conn.send(event)

    if hasattr(os, "setpgrp"):  # a Ctrl-C in the bot's terminal is the bot's to handle
        with contextlib.suppress(OSError):
            os.setpgrp()
    emit(("started", spec.job_id, os.getpid()))
    final = execute(spec, emit, AnyFlag(cancel_event, parent_gone))
    if parent_gone.is_set():
        return
    emit(final)
    conn.close()
