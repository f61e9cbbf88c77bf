"""Background jobs for course tools: a queue, local or Ray workers, and their records."""

from bot.jobs.manager import Backend, JobListener, JobManager, make_backend
from bot.jobs.records import ArtifactInfo, JobInfo, JobRecords
from bot.jobs.worker import JobSpec

__all__ = ["ArtifactInfo", "Backend", "JobInfo", "JobListener", "JobManager", "JobRecords",
           "JobSpec", "make_backend"]
