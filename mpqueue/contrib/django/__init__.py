"""Django: add "mpqueue.contrib.django" to INSTALLED_APPS (an app with no models)
and, optionally, `MPQUEUE_CONFIG = "/etc/mpqueue/shop.yaml"` (or MPQUEUE_BROKER,
a URL) to the settings, so `task.push()` needs no `mpqueue.connect()`. The
environment variables of the same names win over the settings (producer/default.py),
so `MPQUEUE_BROKER=sync:// python manage.py test` runs the jobs inline.

`push_on_commit(task, *args, **kwargs)` enqueues the job once the surrounding
transaction commits (`transaction.on_commit`), so a worker never looks for a row
that is not there yet, and a transaction that rolls back pushes nothing.

The worker side (the `framework: {django: SETTINGS}` key) is in worker.py.
"""
from __future__ import annotations

from ...core import envelope as jobmod
from ...core.names import is_queue_name, queue_rule
from ...producer.default import default_client
from ...producer.handles import JobHandle
from ...producer.tasks import check_arguments


def push_on_commit(task, *args, delay=None, eta=None, priority=0, queue=None, client=None, using=None,
                   job_id=None, **kwargs) -> JobHandle:
    """Push a run of `task` (a @task function, a Task class or a 'module:name'
    string) when the current transaction of database `using` commits; at once
    outside a transaction, as Django's on_commit does. Returns the job's handle
    now (`.status()`, `.result()`, `.cancel()` work once it is delivered).

    The job is built and checked here (its arguments against the task's
    signature too), so a bad argument raises TypeError or PayloadError inside
    the view (and can roll the transaction back); only delivering it waits for
    the commit. `delay` counts from the commit; `eta` is an absolute time;
    `job_id` an id of your choice (a second push with it while the first is live
    creates nothing). If the broker can't be reached at the commit, the data is
    committed and the BrokerError is raised from the end of the `atomic` block
    (as any on_commit callback's error is)."""
    from django.db import transaction

    name, default_queue = _task_name_and_queue(task)
    check_arguments(task, args, kwargs)
    queue = queue or default_queue
    if not is_queue_name(queue):
        raise jobmod.PayloadError(f"queue: expected {queue_rule()}, got {queue!r}")
    client = client or default_client()
    job_id, item = client._item(name, list(args), kwargs, delay, eta, priority, job_id)
    handle = JobHandle(job_id, client, queue)

    def deliver():
        handle.duplicate = bool(client._deliver(queue, [item]))
    transaction.on_commit(deliver, using=using)
    return handle


def _task_name_and_queue(task) -> tuple[str, str]:
    if isinstance(task, str):
        return task, "default"
    options = getattr(task, "options", None)        # a @task function
    queue = options.queue if options is not None else getattr(task, "queue", "default")
    name = getattr(task, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"push_on_commit: expected a task (a @mpqueue.task function, an mpqueue.Task class or "
                        f"a 'module:name' string), got {task!r:.80}")
    return name, queue
