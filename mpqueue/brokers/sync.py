"""`sync://`: push runs the job inline, in the pushing process (think-queue's sync
driver), for tests and development.

The jobs go through a private in-memory SQLite broker and a worker's own Runner,
so retries, backoff accounting, the failed store and the failure hook follow
exactly the rules of a real service; `broker.counts()`, `failed()` and `find()`
show the outcome. What differs, because there is no second process: delays,
`eta` and retry back-off are not waited for (the job runs at once), a timeout
can't kill the job, and a job pushed by a running job runs after it, not
inside it (so push() from a task returns before that job has run).
"""
from __future__ import annotations

import importlib
import logging
import sys

from .. import registry
from ..config import QueueConfig, ServiceConfig
from .sqlite import SQLiteBroker

log = logging.getLogger("mpqueue.sync")


class _NoScoreboard:
    """The Runner reports to the supervisor's scoreboard; inline there is none."""

    def start(self, job_id, token, timeout):
        pass

    def finish(self, ok):
        pass

    def beat(self):
        pass


class SyncBroker(SQLiteBroker):
    def __init__(self, url: str = "sync://", service: ServiceConfig | None = None, **_ignored):
        super().__init__("sqlite::memory:")
        self.url = url
        self.service = service or ServiceConfig(name="sync", broker=url)
        self._runners: dict = {}
        self._pending: list[str] = []     # queues pushed to, in order, not yet drained
        self._draining = False
        if service is not None:
            for entry in reversed(service.path):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            for name in service.imports:
                importlib.import_module(name)

    def push(self, queue, items):
        # Due now, whatever was asked: nobody would be left to run it later.
        super().push(queue, [(envelope, priority, 0) for envelope, priority, _ in items])
        if queue not in self._pending:
            self._pending.append(queue)
        if not self._draining:
            self._drain_all()

    def _drain_all(self) -> None:
        self._draining = True
        try:
            while self._pending:
                self.drain(self._pending[0])
                self._pending.pop(0)
        finally:
            self._draining = False

    def drain(self, queue: str) -> None:
        """Run the queue's jobs until none is ready (jobs they push to other queues
        run after)."""
        while True:
            reserved, next_due = self.reserve(queue, "sync", 1, 3600)
            if not reserved and next_due is not None:
                self._run_scheduled_now(queue)
                continue
            if not reserved:
                return
            token, envelope = reserved[0].token, reserved[0].envelope
            _import_task_module(envelope)
            ack = self._runner(queue).run(token, envelope)
            if ack:
                self.ack(queue, [ack])

    def _runner(self, queue: str):
        from ..runner import Runner
        runner = self._runners.get(queue)
        if runner is None:
            runner = self._runners[queue] = Runner(self, self.service, self._queue_cfg(queue), 0,
                                                   _NoScoreboard())
        return runner

    def _run_scheduled_now(self, queue: str) -> None:
        """Retries wait for their back-off in a service; inline they run at once."""
        with self._write() as db:
            db.execute("UPDATE job SET ord = 0 WHERE queue=? AND state=1", (queue,))

    def _queue_cfg(self, queue: str) -> QueueConfig:
        return self.service.queues.get(queue) or QueueConfig(name=queue)

    def waiter(self, queue, consumer=None):
        raise NotImplementedError("sync:// runs jobs inline; there is nothing to wait for")


def _import_task_module(envelope: str) -> None:
    """A task named 'module:function' that no import registered yet: import its module,
    as a worker's `imports` would have."""
    import json
    try:
        task = json.loads(envelope.split(" ", 3)[3])["t"]
    except (IndexError, ValueError, KeyError, TypeError):
        return      # junk: the runner fails it as bad_payload
    if registry.lookup(task) is None and ":" in task:
        try:
            importlib.import_module(task.partition(":")[0])
        except ImportError as exc:
            log.warning("sync: cannot import the module of task %s: %s", task, exc)
