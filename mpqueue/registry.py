"""Tasks: the `@task` decorator, class-based jobs, and the name -> task registry.

Only tasks registered here can run in a worker: a job naming anything else
(`os:system`) is refused as `unknown_task`. Registration happens at import
time of the modules named in the service's `imports`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

_UNSET = None
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

    def public(self) -> dict:
        """What a worker tells its supervisor about this task (no code crosses)."""
        return {"queue": self.options.queue, "has_on_failure": self.on_failure is not None,
                **self.options.overrides()}


def register(info: TaskInfo) -> None:
    _TASKS[info.name] = info


def lookup(name: str) -> TaskInfo | None:
    return _TASKS.get(name)


def all_tasks() -> dict[str, TaskInfo]:
    return dict(_TASKS)


def _client():
    from . import client
    return client.default_client()


def _push(name, options, args, kwargs, delay=None, eta=None, priority=0, queue=None, client=None):
    return (client or _client()).push(queue or options.queue, name, args=list(args), kwargs=kwargs,
                                      delay=delay, eta=eta, priority=priority)


class FunctionTask:
    """What `@task` turns a function into: still callable, plus `.push()`."""

    def __init__(self, func, name, options, on_failure):
        functools.update_wrapper(self, func)
        self.func, self.name, self.options = func, name, options
        register(TaskInfo(name, func, options, on_failure))

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def push(self, *args, delay=None, eta=None, priority=0, queue=None, client=None, **kwargs) -> str:
        """Enqueue a run of this task; returns the job id."""
        return _push(self.name, self.options, args, kwargs, delay, eta, priority, queue, client)


def task(func=None, *, name=None, queue="default", timeout=None, retries=None, retry_delay=None,
         backoff=None, max_retry_delay=None, retry_on_timeout=None, on_failure=None):
    """Register a function as a task named `module:function` (or `name`)."""
    options = TaskOptions(queue, timeout, retries, retry_delay, backoff, max_retry_delay, retry_on_timeout)

    def wrap(f):
        return FunctionTask(f, name or f"{f.__module__}:{f.__qualname__}", options, on_failure)
    return wrap(func) if func is not None else wrap


class Task:
    """Base for class-based jobs: subclass, set options as class attributes,
    define `run(self, *args, **kwargs)` and optionally `on_failure(self, job, error)`.
    A fresh instance runs each job, so instance state never leaks between jobs."""
    name: str | None = None
    queue = "default"
    timeout = retries = retry_delay = backoff = max_retry_delay = retry_on_timeout = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("abstract"):
            return
        cls.name = cls.__dict__.get("name") or f"{cls.__module__}:{cls.__qualname__}"
        options = TaskOptions(cls.queue, cls.timeout, cls.retries, cls.retry_delay, cls.backoff,
                              cls.max_retry_delay, cls.retry_on_timeout)
        hook = None
        if "on_failure" in _defined(cls):
            hook = lambda job, error, _c=cls: _c().on_failure(job, error)  # noqa: E731
        register(TaskInfo(cls.name, lambda *a, _c=cls, **k: _c().run(*a, **k), options, hook))

    def run(self, *args, **kwargs):
        raise NotImplementedError

    @classmethod
    def push(cls, *args, delay=None, eta=None, priority=0, queue=None, client=None, **kwargs) -> str:
        options = TaskOptions(cls.queue)
        return _push(cls.name, options, args, kwargs, delay, eta, priority, queue, client)


def _defined(cls) -> set:
    names = set()
    for klass in cls.__mro__:
        if klass is Task:
            break
        names.update(klass.__dict__)
    return names


def effective(queue_config, info: TaskInfo | None):
    """The queue's settings with the task's overrides applied (a QueueConfig)."""
    if info is None:
        return queue_config
    return replace(queue_config, **info.options.overrides())
