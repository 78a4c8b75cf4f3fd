"""An mpqueue backend for Django's Tasks framework (`django.tasks`, Django >= 6.0,
DEP 14; the `django-tasks` backport on Django 4.2 to 5.2):

    TASKS = {"default": {"BACKEND": "mpqueue.contrib.django.tasks.MpqueueBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"CONFIG": "/etc/mpqueue/shop.yaml"}}}   # or "BROKER": URL; neither:
                                                                              # MPQUEUE_CONFIG / MPQUEUE_BROKER
`.enqueue()` of a `@task` function pushes one mpqueue job onto the queue named
by the task's `queue_name`, run by a worker of the service that serves it
(`framework: {django: ...}`: the worker imports this module itself); the job's
id is the TaskResult's id and `get_result(id)` reads the job back. Mapped:
priority -100..100 to mpqueue's 0..9 (0 to 4, ties to the lower); `run_after` to
the job's due time; a failure to FAILED with its exception's class and
traceback (after the queue's `retries`: set `retries: 0` for Django's
run-once); a cancelled job to FAILED. A finished job stays readable for its
queue's `result_ttl` seconds, then get_result raises TaskResultDoesNotExist.
"""
from __future__ import annotations

import datetime as dt
import inspect
import json

from asgiref.sync import async_to_sync
from django.utils import timezone
from django.utils.module_loading import import_string

from ...core import envelope as jobmod
from ...core.context import current_job
from ...core.names import is_queue_name, queue_rule
from ...producer import handles
from ...producer.client import Client
from ...producer.default import default_client
from ...producer.tasks import task as mpqueue_task

try:                                              # Django >= 6.0
    from django.tasks import signals
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskContext, TaskError, TaskResult, TaskResultStatus
    from django.tasks.exceptions import InvalidTask as InvalidTaskError, TaskResultDoesNotExist
except ImportError:                               # the django-tasks backport
    from django_tasks import signals
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist

RUN_TASK = "mpqueue.contrib.django.tasks:run_task"
STATUS = {"scheduled": TaskResultStatus.READY, "ready": TaskResultStatus.READY,
          "running": TaskResultStatus.RUNNING, "done": TaskResultStatus.SUCCESSFUL,
          "failed": TaskResultStatus.FAILED, "cancelled": TaskResultStatus.FAILED}


def mpqueue_priority(priority: int) -> int:
    """Django's -100..100 onto mpqueue's 0..9, order kept; the default 0 is 4."""
    return max(0, min(9, round((priority + 100) * 9 / 200)))


class MpqueueBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        self._client = None

    @property
    def client(self) -> Client:
        """OPTIONS' BROKER (a URL) or CONFIG (a YAML path), else the process's default
        client (the MPQUEUE_CONFIG setting's, a worker's own, or connect()'s), read per call."""
        target = self.options.get("BROKER") or self.options.get("CONFIG")
        if not target:
            return default_client()
        if self._client is None:
            self._client = Client(target) if "://" in target else Client.from_config(target)
        return self._client

    def validate_task(self, task) -> None:
        super().validate_task(task)
        if not is_queue_name(task.queue_name):
            raise InvalidTaskError(f"queue_name: expected {queue_rule()}, got {task.queue_name!r}")

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        eta = task.run_after
        if eta is not None and timezone.is_naive(eta):
            eta = timezone.make_aware(eta)
        try:
            handle = self.client.push(task.queue_name, RUN_TASK, [task.module_path, list(args), dict(kwargs)],
                                      eta=eta, priority=mpqueue_priority(task.priority))
        except jobmod.PayloadError as exc:         # e.g. arguments JSON can't carry
            raise InvalidTaskError(str(exc)) from None
        result = _result(task, str(handle), TaskResultStatus.READY, list(args), dict(kwargs), self.alias,
                         enqueued_at=timezone.now())
        signals.task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str):
        # Redis's find() reads a job's places one after another: one that moves from
        # ready to running between two reads is missed once. Look again before saying
        # "does not exist".
        for _ in range(3):
            found = self._find(str(result_id))
            if found is not None:
                return _from_found(str(result_id), found, self.alias)
        raise TaskResultDoesNotExist(result_id)

    def _find(self, result_id: str):
        try:
            return handles.find_anywhere(self.client.broker, result_id,
                                         [*sorted(self.queues), *self.client.broker.queues()])[1]
        except handles.AmbiguousJob:
            return None


def _result(task, result_id, status, args, kwargs, alias, **times):
    fields = dict(enqueued_at=None, started_at=None, finished_at=None, last_attempted_at=None)
    fields.update(times)
    return TaskResult(task=task, id=result_id, status=status, args=args, kwargs=kwargs, backend=alias,
                      errors=[], worker_ids=[], **fields)


def _from_found(result_id: str, found: dict, alias: str):
    """A TaskResult from the broker's record of the job (Inspection.find)."""
    state = handles.state_of(found)
    if state == "done":                  # run_task's return value holds the call
        record = found.get("result") or {}
        path, args, kwargs, value = record.get("task"), record.get("args", []), record.get("kwargs", {}), \
            record.get("value")
    else:
        job = jobmod.decode(found["envelope"])
        path, args, kwargs = job.args[0], job.args[1], job.args[2]
        value = None
    finished = _time(found.get("finished_at") or (found.get("error") or {}).get("at"))
    result = _result(import_string(path), result_id, STATUS[state], args, kwargs, alias, finished_at=finished,
                     last_attempted_at=finished)
    if state == "done":
        object.__setattr__(result, "_return_value", value)
    elif state in ("failed", "cancelled"):
        result.errors.append(_error(found.get("error") or {"message": "JobCancelled: cancelled"}))
    return result


def _error(error: dict):
    kind = (error.get("message") or "").split(":", 1)[0].strip() or "Exception"
    path = kind if "." in kind else f"builtins.{kind}"
    return TaskError(exception_class_path=path, traceback=error.get("traceback") or error.get("message") or "")


def _time(epoch):
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc) if epoch else None


@mpqueue_task(name=RUN_TASK)
def run_task(path: str, args: list, kwargs: dict):
    """The worker's side: call the Django task named by its module path. The
    return value keeps the call with it, so get_result can rebuild the TaskResult
    after the job's own record is gone (a done record holds only the result)."""
    task = import_string(path)
    job = current_job()
    now = timezone.now()
    result = _result(task, job.id if job else "", TaskResultStatus.RUNNING, args, kwargs, task.backend,
                     started_at=now, last_attempted_at=now)
    result.worker_ids.extend(["mpqueue"] * (job.attempt if job else 1))       # TaskContext.attempt counts them
    signals.task_started.send(MpqueueBackend, task_result=result)
    call = async_to_sync(task.func) if _is_async(task.func) else task.func
    try:
        value = call(TaskContext(task_result=result), *args, **kwargs) if task.takes_context else \
            call(*args, **kwargs)
    except BaseException:
        _finished(result, TaskResultStatus.FAILED)
        raise
    _finished(result, TaskResultStatus.SUCCESSFUL)
    return {"task": path, "args": args, "kwargs": kwargs, "value": json.loads(json.dumps(value))}


def _finished(result, status) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    signals.task_finished.send(MpqueueBackend, task_result=result)


def _is_async(func) -> bool:
    return inspect.iscoroutinefunction(func)
