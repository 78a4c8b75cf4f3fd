"""`sync://`: push runs the job inline, in the pushing process (think-queue's sync
driver), for tests and development.

Not a broker of its own: the jobs go into a plain, private in-memory SQLite
broker, and this executor runs them right after each push through a worker's
own Runner, so retries, backoff accounting, the failed store and the failure
hook follow exactly the rules of a real service, and `client.broker.counts()`,
`failed()` and `find()` show the outcome. What differs, because there is no
second process: delays, `eta` and retry back-off are not waited for (the job
runs at once), a timeout can't kill the job, and a job pushed by a running job
runs after it, not inside it (so push() from a task returns before that job
has run).
"""
from __future__ import annotations

import importlib
import logging
import sys

from ..brokers.sqlite import SQLiteBroker
from ..core import envelope as jobmod
from ..core import tasks
from ..core.config import QueueConfig, ServiceConfig
from ..execution.runner import Runner

log = logging.getLogger("mpqueue.sync")
LEASE = 3600.0            # nobody else can take an inline job: the lease only has to outlast it


class _NoScoreboard:
    """The Runner reports to the supervisor's scoreboard; inline there is none."""

    def start(self, job_id, token, timeout):
        pass

    def finish(self, ok):
        pass

    def beat(self):
        pass


class Inline:
    def __init__(self, service: ServiceConfig | None = None):
        self.broker = SQLiteBroker("sqlite::memory:")
        self.service = service or ServiceConfig(name="sync", broker="sync://")
        self._runners: dict[str, Runner] = {}
        self._pending: list[str] = []     # queues pushed to, in order, not yet drained
        self._draining = False
        if service is not None:
            for entry in reversed(service.path):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            for name in service.imports:
                importlib.import_module(name)

    def pushed(self, queue: str) -> None:
        """Run what was pushed; from inside a running job, after that job."""
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
        """Run the queue's jobs until none is waiting (jobs they push to other
        queues run after); delayed ones and retries run at once."""
        while True:
            reserved, next_due = self.broker.reserve(queue, "sync", 1, LEASE)
            if not reserved and next_due is not None:
                self.broker.promote_all(queue)
                continue
            if not reserved:
                return
            token, envelope = reserved[0].token, reserved[0].envelope
            _import_task_module(envelope)
            ack = self._runner(queue).run(token, envelope)
            if ack:
                self.broker.ack(queue, [ack])

    def _runner(self, queue: str) -> Runner:
        runner = self._runners.get(queue)
        if runner is None:
            cfg = self.service.queues.get(queue) or QueueConfig(name=queue)
            runner = self._runners[queue] = Runner(self.broker, self.service, cfg, 0, _NoScoreboard())
        return runner


def _import_task_module(envelope: str) -> None:
    """A task named 'module:function' that no import registered yet: import its module,
    as a worker's `imports` would have."""
    try:
        task = jobmod.decode(envelope).task
    except jobmod.PayloadError:
        return      # junk: the runner fails it as bad_payload
    if tasks.lookup(task) is None and ":" in task:
        try:
            importlib.import_module(task.partition(":")[0])
        except ImportError as exc:
            log.warning("sync: cannot import the module of task %s: %s", task, exc)
