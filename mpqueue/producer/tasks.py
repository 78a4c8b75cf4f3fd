"""Defining tasks: the `@task` decorator and the `Task` base class for class-based
jobs. Both register in the task table (core/tasks.py) when their module is
imported, and both can push a run of themselves.

Two ways to push: `push(*args, **kwargs)` for the common case, where the
keywords `delay`, `eta`, `priority`, `queue` and `client` are push options,
and `push_with(args=..., kwargs=..., ...)`, which passes any keyword arguments
to the task, those names included (RQ's old trap, its issue 98). From async
code, `await apush(...)` and `await apush_with(...)` take the same arguments.

Each checks the task's arguments before anything is pushed, as a call would
(`inspect.signature(...).bind`, Celery's signature check): a wrong call is one
TypeError in the caller, not a job that fails in a worker.
"""
from __future__ import annotations

import functools
import inspect

from ..core.tasks import TaskInfo, TaskOptions, register
from .default import default_client


def check_arguments(task, args, kwargs) -> None:
    """Raise TypeError, naming the task, if `task` (a @task function or a Task
    class) can't be called with these arguments. A 'module:name' string (no code
    at hand) or a callable whose signature Python can't read passes."""
    func, bound = (task.func, False) if isinstance(task, FunctionTask) else (None, False)
    if isinstance(task, type) and issubclass(task, Task):
        func, bound = task.run, True
    if func is None or not isinstance(args, (list, tuple)) or not isinstance(kwargs, (dict, type(None))):
        return          # not code, or arguments the payload check refuses with its own error
    signature = _signature(func)
    if signature is None:
        return
    try:
        signature.bind(*((None,) if bound else ()), *args, **(kwargs or {}))
    except TypeError as exc:
        hint = ""
        if "job_id" in (kwargs or {}) and "job_id" not in signature.parameters:
            hint = "; job_id is not an option of push(): push_with(args=[...], job_id=...) takes it"
        raise TypeError(f"task {task.name}: wrong arguments: {exc}{hint}") from None


def _signature(func):
    """inspect.signature(func), read once per function (reading it costs a push more
    than the push's own encoding); None when Python can't read it."""
    try:
        return _cached_signature(func)
    except TypeError:            # an unhashable callable: read each time
        return _read_signature(func)


def _read_signature(func):
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


_cached_signature = functools.lru_cache(maxsize=None)(_read_signature)


def _push(name, options, args, kwargs, delay=None, eta=None, priority=0, queue=None, client=None, job_id=None):
    return (client or default_client()).push(queue or options.queue, name, args=list(args), kwargs=kwargs,
                                             delay=delay, eta=eta, priority=priority, job_id=job_id)


async def _apush(name, options, args, kwargs, delay=None, eta=None, priority=0, queue=None, client=None,
                 job_id=None):
    return await (client or default_client()).apush(queue or options.queue, name, args=list(args), kwargs=kwargs,
                                                    delay=delay, eta=eta, priority=priority, job_id=job_id)


class FunctionTask:
    """What `@task` turns a function into: still callable, plus `.push()` and `.apush()`."""

    def __init__(self, func, name, options, on_failure):
        functools.update_wrapper(self, func)
        self.func, self.name, self.options = func, name, options
        register(TaskInfo(name, func, options, on_failure,
                          origin=f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"))

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def push(self, *args, delay=None, eta=None, priority=0, queue=None, client=None, **kwargs) -> str:
        """Enqueue a run of this task; returns the job id (a JobHandle)."""
        check_arguments(self, args, kwargs)
        return _push(self.name, self.options, args, kwargs, delay, eta, priority, queue, client)

    def push_with(self, args=(), kwargs=None, *, delay=None, eta=None, priority=0, queue=None, client=None,
                  job_id=None) -> str:
        """Enqueue a run with explicit `args` and `kwargs` (any names, `delay` too);
        `job_id`: an id of your choice (see Client.push)."""
        check_arguments(self, args, kwargs)
        return _push(self.name, self.options, args, kwargs, delay, eta, priority, queue, client, job_id)

    async def apush(self, *args, delay=None, eta=None, priority=0, queue=None, client=None, **kwargs) -> str:
        """push() for async code; returns the job id."""
        check_arguments(self, args, kwargs)
        return await _apush(self.name, self.options, args, kwargs, delay, eta, priority, queue, client)

    async def apush_with(self, args=(), kwargs=None, *, delay=None, eta=None, priority=0, queue=None,
                         client=None, job_id=None) -> str:
        """push_with() for async code."""
        check_arguments(self, args, kwargs)
        return await _apush(self.name, self.options, args, kwargs, delay, eta, priority, queue, client, job_id)


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
        # An `async def run` makes it an async task, as `@task` on an `async def` does.
        register(TaskInfo(cls.name, lambda *a, _c=cls, **k: _c().run(*a, **k), options, hook,
                          is_async=inspect.iscoroutinefunction(cls.run), origin=f"{cls.__module__}:{cls.__qualname__}"))

    def run(self, *args, **kwargs):
        raise NotImplementedError

    @classmethod
    def push(cls, *args, delay=None, eta=None, priority=0, queue=None, client=None, **kwargs) -> str:
        check_arguments(cls, args, kwargs)
        return _push(cls.name, TaskOptions(cls.queue), args, kwargs, delay, eta, priority, queue, client)

    @classmethod
    def push_with(cls, args=(), kwargs=None, *, delay=None, eta=None, priority=0, queue=None, client=None,
                  job_id=None) -> str:
        """Enqueue a run with explicit `args` and `kwargs` (any names, `delay` too)."""
        check_arguments(cls, args, kwargs)
        return _push(cls.name, TaskOptions(cls.queue), args, kwargs, delay, eta, priority, queue, client, job_id)

    @classmethod
    async def apush(cls, *args, delay=None, eta=None, priority=0, queue=None, client=None, **kwargs) -> str:
        check_arguments(cls, args, kwargs)
        return await _apush(cls.name, TaskOptions(cls.queue), args, kwargs, delay, eta, priority, queue, client)

    @classmethod
    async def apush_with(cls, args=(), kwargs=None, *, delay=None, eta=None, priority=0, queue=None,
                         client=None, job_id=None) -> str:
        """push_with() for async code."""
        check_arguments(cls, args, kwargs)
        return await _apush(cls.name, TaskOptions(cls.queue), args, kwargs, delay, eta, priority, queue, client,
                            job_id)


def _defined(cls) -> set:
    names = set()
    for klass in cls.__mro__:
        if klass is Task:
            break
        names.update(klass.__dict__)
    return names
