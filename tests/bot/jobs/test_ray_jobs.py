"""The Ray backend: a local Ray instance runs a real job, with progress, files and cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bot.jobs import JobManager
from bot.jobs.ray_backend import RayBackend
from bot.settings import Settings
from bot.storage.store import Store
from tests.support.jobs import call

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, object_store_memory=80 * 1024 * 1024)
    yield
    ray.shutdown()


def test_a_job_runs_as_a_ray_task(local_ray: None, settings: Settings) -> None:
    settings = settings.model_copy(update={"jobs_backend": "ray", "max_concurrent_jobs": 2})
    store = Store(settings.resolved_database_url)
    manager = JobManager(settings, store)
    assert isinstance(manager.backend, RayBackend)
    try:
        done_id = manager.submit(call("demo.montecarlo_pi", "run", {"n": "100k"}), "c1", "u1")
        slow_id = manager.submit(call("demo.montecarlo_pi", "run", {"n": "1M", "pace": "0.2"}),
                                 "c1", "u1")
        handle = manager.handle(slow_id)
        assert handle is not None
        while handle.fraction < 0.05:  # progress flows back through the hub actor
            time.sleep(0.1)  # (the test's timeout fails progress that never comes)
        manager.cancel(slow_id)
        # "cancelled", not "done": the cancel reached the Ray task (the wait bounds the time)
        cancelled = manager.wait(slow_id, timeout=10)
        assert cancelled is not None and cancelled.status == "cancelled"
        assert cancelled.worker is not None and "/ray:" in cancelled.worker

        info = manager.wait(done_id, timeout=45)
        assert info is not None and info.status == "done", info
        assert abs(info.metrics["pi_estimate"] - 3.14159) < 0.05
        (image,) = info.images
        assert image.path.read_bytes().startswith(b"\x89PNG")  # written or shipped back
    finally:
        manager.close()
        store.dispose()
