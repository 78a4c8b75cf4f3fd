"""mpqueue: a systemd-native, multi-process job queue for Python.

The public API. The package is laid out by who runs the code (docs/architecture.md):
core (pure rules) <- brokers <- execution <- producer <- worker <- supervisor <- ops.
"""
from .core.context import JobContext, Retry, current_job
from .core.envelope import PayloadError
from .producer.client import Client
from .producer.default import connect
from .producer.handles import AmbiguousJob, JobCancelled, JobFailed, JobHandle, JobUnknown, ResultTimeout
from .producer.tasks import Task, task

__all__ = ["Client", "connect", "JobContext", "Retry", "current_job", "PayloadError", "Task", "task",
           "JobHandle", "JobFailed", "JobCancelled", "JobUnknown", "ResultTimeout", "AmbiguousJob"]
__version__ = "0.2.0"
