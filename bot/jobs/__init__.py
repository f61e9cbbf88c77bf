"""Background jobs for course tools: a queue, local or Ray workers, and their records.

What runs inside a worker (:class:`~bot.jobs.worker.JobSpec`, ``execute``) lives in
:mod:`bot.jobs.worker`, imported when the first job is built: it brings in course_tools.
"""

from bot.jobs.manager import Backend, JobListener, JobManager, make_backend
from bot.jobs.records import ArtifactInfo, JobInfo, JobRecords

__all__ = ["ArtifactInfo", "Backend", "JobInfo", "JobListener", "JobManager", "JobRecords",
           "make_backend"]
