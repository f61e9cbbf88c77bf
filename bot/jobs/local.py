"""The local backend: one spawned process per job, events over a pipe, cancel via an Event."""

from __future__ import annotations

import multiprocessing
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from bot.jobs.worker import JobEvent, JobSpec, child_main

#: Seconds a terminated worker gets before it is killed outright.
TERMINATE_GRACE = 1.0


@dataclass
class _Worker:
    process: Any
    conn: Any
    cancel: Any
    final_seen: bool = False
    events: list[JobEvent] = field(default_factory=list)


class LocalBackend:
    """Runs each job in its own ``spawn``-ed process (no state leaks between jobs)."""

    name = "local"

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: dict[str, _Worker] = {}

    def start(self, spec: JobSpec) -> str:
        """Start ``spec`` now; returns a worker description for the job row."""
        reader, writer = self._ctx.Pipe(duplex=False)
        cancel = self._ctx.Event()
        process = self._ctx.Process(target=child_main, args=(spec, writer, cancel),
                                    name=f"amlbot-job-{spec.job_id}", daemon=False)
        process.start()
        writer.close()  # the child holds the only write end, so EOF means it is gone
        self._workers[spec.job_id] = _Worker(process, reader, cancel)
        return f"local:{socket.gethostname()}:{process.pid}"

    def cancel(self, job_id: str) -> None:
        """Ask the job to stop (the tool sees it at its next progress report)."""
        worker = self._workers.get(job_id)
        if worker is not None:
            worker.cancel.set()

    def kill(self, job_id: str) -> None:
        """The last resort: terminate the worker process (SIGTERM, then SIGKILL)."""
        worker = self._workers.get(job_id)
        if worker is None or not worker.process.is_alive():
            return
        worker.process.terminate()
        worker.process.join(TERMINATE_GRACE)
        if worker.process.is_alive():
            worker.process.kill()

    def running(self) -> set[str]:
        return set(self._workers)

    def poll(self, timeout: float) -> list[JobEvent]:
        """Events from every worker, waiting up to ``timeout`` s for the first one."""
        if not self._workers:
            time.sleep(timeout)
            return []
        waitables = []
        for worker in self._workers.values():
            waitables += [worker.conn, worker.process.sentinel]
        wait(waitables, timeout)
        events: list[JobEvent] = []
        for job_id, worker in list(self._workers.items()):
            events += self._drain(worker)
            if worker.process.is_alive() and not worker.final_seen:
                continue
            worker.process.join(TERMINATE_GRACE)
            if worker.process.is_alive():  # sent its result but hangs on exit
                worker.process.kill()
                worker.process.join(TERMINATE_GRACE)
            events += self._drain(worker)
            if not worker.final_seen:
                code = worker.process.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                events.append(("died", job_id, f"the worker process died ({how})"))
            worker.conn.close()
            del self._workers[job_id]
        return events

    def _drain(self, worker: _Worker) -> list[JobEvent]:
        events = []
        try:
            while worker.conn.poll():
                event = worker.conn.recv()
                events.append(event)
                if event[0] in ("done", "failed", "cancelled"):
                    worker.final_seen = True
        except (EOFError, OSError):
            pass
        return events

    def close(self) -> None:
        """Make sure no worker process outlives the bot."""
        for job_id in list(self._workers):
            self.kill(job_id)
            self._workers[job_id].conn.close()
        self._workers.clear()
