"""The task table: name -> task, and each task's overrides of its queue's settings.

Only tasks registered here can run in a worker: a job naming anything else
(`os:system`) is refused as `unknown_task`. Registration happens at import
time of the modules named in the service's `imports`, through the `@task`
decorator and the `Task` base class (producer/tasks.py).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace

_TASKS: dict[str, "TaskInfo"] = {}


@dataclass(frozen=True)
class TaskOptions:
    """Per-task overrides of the queue's settings; None means 'use the queue's'."""
    queue: str = "default"
    timeout: float | None = None
    retries: int | None = None
    retry_delay: float | None = None
    backoff: str | None = None
    max_retry_delay: float | None = None
    retry_on_timeout: bool | None = None

    def overrides(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "queue" and v is not None}


@dataclass(frozen=True)
class TaskInfo:
    name: str
    func: object                  # callable run with the job's args
    options: TaskOptions
    on_failure: object | None     # callable(job_info, error_info) or None
    is_async: bool = False        # func returns a coroutine: it runs on the worker's event loop
    origin: str = ""              # "module:qualname" of what defined it, to tell two definitions apart

    def public(self) -> dict:
        """What a worker tells its supervisor about this task (no code crosses)."""
        return {"queue": self.options.queue, "has_on_failure": self.on_failure is not None,
                **self.options.overrides()}


class DuplicateTaskName(Exception):
    """Two definitions claim one task name (str(e): one line naming both)."""


def register(info: TaskInfo) -> None:
    """Add a task to the table. The same definition again (its module imported
    twice, a reload) replaces itself; another definition under a name already
    taken is refused: the last import would silently win every job of that name."""
    if not info.is_async and inspect.iscoroutinefunction(info.func):
        info = replace(info, is_async=True)
    taken = _TASKS.get(info.name)
    if taken is not None and taken.origin != info.origin:
        raise DuplicateTaskName(f"task name {info.name!r} is defined twice, by {taken.origin or '?'} and by "
                                f"{info.origin or '?'}: give one of them another name (@task(name=...))")
    _TASKS[info.name] = info


def lookup(name: str) -> TaskInfo | None:
    return _TASKS.get(name)


def all_tasks() -> dict[str, TaskInfo]:
    return dict(_TASKS)


def effective(queue_config, info: TaskInfo | None):
    """The queue's settings with the task's overrides applied (a QueueConfig)."""
    if info is None:
        return queue_config
    return replace(queue_config, **info.options.overrides())
