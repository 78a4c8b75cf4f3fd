"""mpqueue: a systemd-native, multi-process job queue for Python."""
from .client import Client, connect
from .context import JobContext, Retry, current_job
from .job import PayloadError
from .registry import Task, task

__all__ = ["Client", "connect", "JobContext", "Retry", "current_job", "PayloadError", "Task", "task"]
__version__ = "0.1.0"
