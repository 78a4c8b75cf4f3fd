"""`sync://`: push runs the job inline, in the pushing process (think-queue's sync
driver), for tests and development.

Not a broker of its own: the jobs go into a plain, private in-memory SQLite
broker, and this executor runs them right after each push through a worker's
own Runner, so retries, backoff accounting, the failed store and the failure
hook follow exactly the rules of a real service, and `client.broker.counts()`,
`failed()` and `find()` show the outcome. What differs, because there is no
second process: delays, `eta` and retry back-off are not waited for (the job
runs at once), a timeout can't kill a plain task, and a job pushed by a
running job runs after it, not inside it (so push() from a task returns before
that job has run). A framework's client (contrib/) gives its per-job scope, so
an inline job runs inside the Flask app context or Django's connection
handling, as in a worker.

From async code, `await client.apush()` runs the job inline too, without
blocking the caller's event loop: an `async def` task is awaited on that loop
(never in a nested asyncio.run()), a plain task and every broker call run on a
thread. Concurrent apush() calls on one loop take turns, each returning after
its job has run.
"""
from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
import sys
import weakref

from ..brokers.sqlite import SQLiteBroker
from ..core import envelope as jobmod
from ..core import tasks
from ..core.config import QueueConfig, ServiceConfig
from ..execution.outcome import Outcome
from ..execution.runner import Runner, Started

log = logging.getLogger("mpqueue.sync")
LEASE = 3600.0            # nobody else can take an inline job: the lease only has to outlast it
# Set while this context runs inline jobs, and seen by what those jobs run (their
# context is copied from it): an apush() from a running job must not wait for
# the drain that runs it.
_IN_JOB = contextvars.ContextVar("mpqueue_inline_job", default=False)


class _NoScoreboard:
    """The Runner reports to the supervisor's scoreboard; inline there is none."""

    def start(self, *args):
        pass

    def finish(self, *args):
        pass

    def count_failed(self):
        pass

    def beat(self):
        pass


class Inline:
    def __init__(self, service: ServiceConfig | None = None, scope=None):
        self.scope = scope                # the framework's per-job scope (contrib/), as a worker has
        self.broker = SQLiteBroker("sqlite::memory:")
        self.service = service or ServiceConfig(name="sync", broker="sync://")
        self._runners: dict[str, Runner] = {}
        self._pending: list[str] = []     # queues pushed to, in order, not yet drained
        self._draining = False
        self._turns = weakref.WeakKeyDictionary()    # event loop -> asyncio.Lock: apush() drains one at a time
        if service is not None:
            for entry in reversed(service.path):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            for name in service.imports:
                importlib.import_module(name)

    def pushed(self, queue: str) -> None:
        """Run what was pushed; from inside a running job, after that job."""
        self._note(queue)
        if not self._draining:
            self._draining = True
            reset = _IN_JOB.set(True)
            try:
                while self._pending:
                    self.drain(self._pending.pop(0))
            finally:
                _IN_JOB.reset(reset)
                self._draining = False

    def _note(self, queue: str) -> None:
        # Taken off the list before it is drained: a push to it meanwhile puts it back.
        if queue not in self._pending:
            self._pending.append(queue)

    def drain(self, queue: str) -> None:
        """Run the queue's jobs until none is waiting (jobs they push to other
        queues run after); delayed ones and retries run at once."""
        runner = self._runner(queue)
        while (reserved := self._reserve(queue)) is not None:
            _import_task_module(reserved.envelope)
            self._ack(queue, runner.run(reserved.token, reserved.envelope))

    async def apushed(self, queue: str) -> None:
        """pushed() for apush(): returns once the job has run (from inside a running
        job, at once: it runs after that job)."""
        self._note(queue)
        if self._draining and _IN_JOB.get():
            return
        async with self._turn():
            if self._draining:
                return            # a push() on another thread is draining: it runs this too
            self._draining = True
            reset = _IN_JOB.set(True)
            try:
                while self._pending:
                    await self._adrain(self._pending.pop(0))
            finally:
                _IN_JOB.reset(reset)
                self._draining = False

    async def _adrain(self, queue: str) -> None:
        while (s := await asyncio.to_thread(self._begin_next, queue)) is not None:
            # A task of its own on the caller's loop, so the job's timeout cancels the
            # job, not the caller. A cancelled caller cancels an async job (which is then
            # recorded as failed); a plain one can't be stopped and is recorded when done.
            job = asyncio.ensure_future(self._arun(queue, s))
            try:
                await asyncio.shield(job)
            except asyncio.CancelledError:
                if s.is_async:
                    job.cancel()
                raise

    async def _arun(self, queue: str, s: Started) -> None:
        runner = self._runner(queue)
        if s.is_async:
            outcome = await runner.execute_async(s)
        else:
            outcome = await asyncio.to_thread(runner.execute, s)
        await asyncio.to_thread(self._end, queue, s, outcome)

    def _end(self, queue: str, s: Started, outcome: Outcome) -> None:
        self._ack(queue, self._runner(queue).end(s, outcome))

    def _turn(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._turns.get(loop)
        if lock is None:
            lock = self._turns[loop] = asyncio.Lock()
        return lock

    def _begin_next(self, queue: str) -> Started | None:
        """Reserve and begin the queue's next job; None when none is waiting."""
        while (reserved := self._reserve(queue)) is not None:
            _import_task_module(reserved.envelope)
            started = self._runner(queue).begin(reserved.token, reserved.envelope)
            if started is not None:
                return started            # (None: refused, and settled already)
        return None

    def _reserve(self, queue: str):
        """The queue's next job (delayed ones made due at once), or None."""
        while True:
            reserved, next_due = self.broker.reserve(queue, "sync", 1, LEASE)
            if reserved:
                return reserved[0]
            if next_due is None:
                return None
            self.broker.promote_all(queue)

    def _ack(self, queue: str, ack) -> None:
        if ack:
            self.broker.ack(queue, [ack])

    def _runner(self, queue: str) -> Runner:
        runner = self._runners.get(queue)
        if runner is None:
            cfg = self.service.queues.get(queue) or QueueConfig(name=queue)
            runner = self._runners[queue] = Runner(self.broker, self.service, cfg, 0, _NoScoreboard(),
                                                     scope=self.scope)
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
