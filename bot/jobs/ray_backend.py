"""The Ray backend (``AMLBOT_JOBS_BACKEND=ray``): each job is a Ray task with a resource request.

Progress and cancel flags go through one small actor (the "hub") that the bot polls; results and
their files come back as the task's return value, so workers may run on other machines.
``AMLBOT_RAY_ADDRESS`` picks the cluster (``auto``, ``ray://host:10001``); unset: a local one.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from bot.jobs.worker import JobEvent, JobSpec

#: Seconds between two looks at the hub's cancel flag from inside a task.
CANCEL_POLL = 0.3


@lru_cache(maxsize=1)
def _remote_parts() -> tuple[Any, Any]:
    """The hub actor class and the task function (built once ``ray`` is imported)."""
    import ray

    @ray.remote(num_cpus=0)
    class Hub:
        """Collects progress events from tasks and holds the cancel flags."""

        def __init__(self) -> None:
            self.events: list[JobEvent] = []
            self.cancelled: set[str] = set()

        def put(self, event: JobEvent) -> None:
            self.events.append(event)

        def drain(self) -> list[JobEvent]:
            events, self.events = self.events, []
            return events

        def cancel(self, job_id: str) -> None:
            self.cancelled.add(job_id)

        def is_cancelled(self, job_id: str) -> bool:
            return job_id in self.cancelled

    @ray.remote(max_retries=0)
    def apply(func: Any, item: Any) -> Any:
        return func(item)

    def fan_out(func: Any, items: Any) -> list[Any]:
        """A tool's ``ctx.fan_out``: one Ray task per item (folds, trials...)."""
        return list(ray.get([apply.remote(func, item) for item in items]))

    @ray.remote(max_retries=0)
    def run_job(spec: JobSpec, hub: Any) -> JobEvent:
        import os

        from bot.jobs.worker import execute

        class HubFlag:
            def __init__(self) -> None:
                self.checked = 0.0
                self.value = False

            def is_set(self) -> bool:
                now = time.monotonic()
                if not self.value and now - self.checked >= CANCEL_POLL:
                    self.checked = now
                    self.value = bool(ray.get(hub.is_cancelled.remote(spec.job_id)))
                return self.value

        hub.put.remote(("started", spec.job_id, os.getpid()))
        return execute(spec, lambda event: hub.put.remote(event), HubFlag(), ship_files=True,
                       fan_out=fan_out)

    return Hub, run_job


class RayBackend:
    """Runs jobs as Ray tasks; ``address`` None starts (or joins) a Ray instance on this host."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self._hub: Any = None
        self._refs: dict[str, Any] = {}

    def _ensure(self) -> Any:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address or None, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True,
                     configure_logging=False)
        if self._hub is None:
            hub_class, _ = _remote_parts()
            self._hub = hub_class.remote()
        return ray

    def start(self, spec: JobSpec) -> str:
        self._ensure()
        _, run_job = _remote_parts()
        wanted = spec.resources
        options: dict[str, Any] = {"num_cpus": wanted.cpus, "num_gpus": wanted.gpus,
                                   "name": f"amlbot-job-{spec.job_id}"}
        if wanted.memory_mb:
            options["memory"] = wanted.memory_mb * 2**20
        ref = run_job.options(**options).remote(spec, self._hub)
        self._refs[spec.job_id] = ref
        return f"ray:{self.address or 'local'}:{ref.task_id().hex()[:16]}"

    def cancel(self, job_id: str) -> None:
        if self._hub is not None and job_id in self._refs:
            self._hub.cancel.remote(job_id)

    def kill(self, job_id: str) -> None:
        import ray

        ref = self._refs.get(job_id)
        if ref is not None:
            ray.cancel(ref, force=True)

    def running(self) -> set[str]:
        return set(self._refs)

    def poll(self, timeout: float) -> list[JobEvent]:
        if not self._refs:
            time.sleep(timeout)
            return []
        ray = self._ensure()
        refs = list(self._refs.values())
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        events: list[JobEvent] = list(ray.get(self._hub.drain.remote()))
        by_ref = {ref: job_id for job_id, ref in self._refs.items()}
        for ref in ready:
            job_id = by_ref[ref]
            del self._refs[job_id]
            try:
                events.append(ray.get(ref))
            except ray.exceptions.TaskCancelledError:
                events.append(("cancelled", job_id, "cancelled"))
            except ray.exceptions.RayError as exc:
                events.append(("died", job_id, f"the Ray task failed: {str(exc)[:500]}"))
        return events

    def close(self) -> None:
        """Stop whatever still runs and drop the hub."""
        import ray

        for job_id in list(self._refs):
            self.kill(job_id)
        self._refs.clear()
        if self._hub is not None and ray.is_initialized():
            ray.kill(self._hub)
        self._hub = None
