"""Run one reserved job inside a worker and decide its outcome.

Returns an Ack for a success (the caller folds it into its next broker call);
retries and failures are settled here (settle.py).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from dataclasses import dataclass

from ..brokers.base import Ack, BrokerError
from ..core import envelope as jobmod
from ..core import failures, tasks
from ..core.context import CancelProbe, JobContext, Retry, reset_current, set_current
from ..core.names import import_string
from ..core.retry import delay_problem
from ..tally import UNREGISTERED, NoTally
from .aio import EventLoop
from .outcome import Done, Errored, Outcome, RetryAsked, TimedOut
from .settle import Failure, cancelled_line, settle_failure
from .texts import clean_text, describe, format_traceback, result_record

log = logging.getLogger("mpqueue.job")
# The built-in task that runs failure hooks: it runs only hooks this service configured.
_HOOK_INFO = tasks.TaskInfo(failures.HOOK_TASK, None, tasks.TaskOptions(), None)


CANCEL_GRACE = 2.0    # an async job past its timeout has this long to finish cancelling
CANCEL_POLL = 1.0     # a running async job looks for a cancel request this often (after its first second)


class _Expired(Exception):
    """Our timeout cancelled the job (not a CancelledError of the task's own)."""


@dataclass(eq=False)
class Started:
    """A job from its start in a slot to its recorded outcome."""
    job: jobmod.Job
    info: tasks.TaskInfo
    cfg: object               # the queue's settings with the task's overrides
    started: float            # the runner's clock (time.monotonic())
    slot: int
    is_async: bool
    timed_out: bool = False   # its timeout cancelled it
    task: object = None       # the asyncio.Task running it, for an async job
    probe: object = None      # its CancelProbe (current_job().cancelled)
    reported: bool = False    # its end was handed to the main thread (worker/slots.py: once only)


class JobScope:
    """What a framework wraps around each job (mpqueue/contrib/): `enter()` on the
    job's own thread before it and its before_job hook run, `exit(token)` with
    what enter returned once it ends, whatever its outcome; `aenter()` and
    `aexit(token)` the same for an async job, in its own asyncio task. exit and
    aexit must not raise (log instead): the job's outcome is decided already."""

    def enter(self):
        return None

    def exit(self, token) -> None:
        pass

    async def aenter(self):
        return self.enter()

    async def aexit(self, token) -> None:
        self.exit(token)


_OUTSIDE = object()     # no scope entered (yet)


class Runner:
    def __init__(self, broker, service_cfg, queue_cfg, worker_index: int, scoreboard, aio: EventLoop | None = None,
                 tally=None, scope: JobScope | None = None, clock=time.monotonic):
        self.broker = broker
        self.clock = clock            # durations and deadlines: monotonic (a parameter for tests)
        self.scope = scope            # the framework's per-job setup, or None
        self.service = service_cfg
        self.cfg = queue_cfg
        self.index = worker_index
        self.scoreboard = scoreboard
        self.tally = tally or NoTally()          # the metrics' counters (tally.py)
        self.aio = aio or EventLoop(threaded=False)
        self.before_job = [import_string(s) for s in (queue_cfg.before_job,) if s]
        self._effective: dict = {}    # task name -> the queue's settings with the task's overrides

    def _options(self, info):
        cfg = self._effective[info.name] = tasks.effective(self.cfg, info)
        return cfg

    def run(self, token: str, envelope: str) -> Ack | None:
        """Run a reserved job in this thread (an async one on the loop, here) and
        record exactly one outcome: an Ack to deliver (done), or a retry or failure
        settled in the broker. The scoreboard says busy until the outcome is
        recorded, so if recording fails and the worker dies, the supervisor counts
        the death against this job's attempt."""
        s = self.begin(token, envelope)
        if s is None:
            return None
        outcome = self.aio.run(self.execute_async(s)) if s.is_async else self.execute(s)
        return self.end(s, outcome)

    def begin(self, token: str, envelope: str, slot: int = 0, backstop: float = 0.0) -> Started | None:
        """Decode and look up a reserved job and mark its slot busy; None when it was
        refused (settled already). The supervisor kills the worker at the job's
        timeout (after CANCEL_GRACE more for an async one, which is cancelled first),
        plus `backstop` when the worker watches its jobs' deadlines itself."""
        try:
            job = jobmod.decode(envelope, self.cfg.name, token)
        except jobmod.PayloadError as exc:
            self._refuse(token, envelope, failures.BAD_PAYLOAD, str(exc), slot)
            return None
        info = _HOOK_INFO if job.task == failures.HOOK_TASK else tasks.lookup(job.task)
        if info is None:
            self._refuse_job(job, failures.UNKNOWN_TASK, f"task {job.task!r} is not registered in this service's imports",
                             slot)
            return None
        cfg = self._effective.get(info.name) or self._options(info)
        if cfg.timeout > self.cfg.timeout:
            # The reservation's lease was sized for the queue's timeout.
            self.broker.extend_soon(self.cfg.name, job.id, token, cfg.timeout + self.service.lease_grace)
        is_async = info.is_async
        self.scoreboard.start(job.id, token, cfg.timeout + (CANCEL_GRACE if is_async else 0.0) + backstop, slot)
        if job.attempts == 1 and job.due_ms > 0:     # a retry's due time is not in its envelope: first attempts only
            self.tally.observe_wait(time.time() - job.due_ms / 1000.0)
        return Started(job, info, cfg, self.clock(), slot, is_async)

    def end(self, s: Started, outcome: Outcome) -> Ack | None:
        """Record the outcome of a job begun here; frees its slot."""
        try:
            ack = self._record(s, outcome)
        except BrokerError:
            raise                     # the caller exits; the busy scoreboard spends the attempt
        except Exception as exc:      # noqa: BLE001 - a bug of ours must not loop the job
            log.exception("could not record the outcome of job %s", s.job.id,
                          extra=self._extra(s.job, 0, "bad_result"))
            self._failed(s, Failure(failures.BAD_RESULT, f"its outcome could not be recorded: {describe(exc)}"))
            ack = None
        self.scoreboard.finish(ack is not None, s.slot)
        return ack

    def execute(self, s: Started) -> Outcome:
        """Run a plain task (in any thread) to its Outcome. Never raises, whatever the task does."""
        try:
            return Done(self._call(s))
        except Retry as exc:
            return RetryAsked(exc.delay, describe(exc, with_type=False))
        except _Expired:
            return TimedOut()
        except BaseException as exc:  # noqa: BLE001 - a task may raise anything, even SystemExit
            return Errored(describe(exc), clean_text(format_traceback()))

    async def execute_async(self, s: Started) -> Outcome:
        """Run an async task on the running loop, cancelled at its timeout; the
        outcome as execute() gives it. Never raises."""
        s.task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        timer = loop.call_later(s.cfg.timeout, _expire, s)
        watcher = _CancelWatch(s, loop, self.aio)
        try:
            return Done(await self._call_async(s))
        except Retry as exc:
            return RetryAsked(exc.delay, describe(exc, with_type=False))
        except (asyncio.CancelledError, _Expired) as exc:
            if s.timed_out:
                return TimedOut()
            return Errored(describe(exc), clean_text(format_traceback()))
        except BaseException as exc:  # noqa: BLE001
            return Errored(describe(exc), clean_text(format_traceback()))
        finally:
            timer.cancel()
            watcher.cancel()

    def _record(self, s: Started, outcome: Outcome) -> Ack | None:
        job = s.job
        if isinstance(outcome, Done):
            asked = self._asked(s)
            if asked:             # its ack ends it as cancelled: count and log it so
                self._cancelled(job, job.task, asked, "asked to stop, it returned (its result is dropped)", s.started)
            return self._ack(job, outcome.value, s.started, counted=bool(asked))
        if isinstance(outcome, TimedOut):
            self._failed(s, Failure(failures.TIMEOUT, f"exceeded its timeout of {s.cfg.timeout:g} s (cancelled)"))
            return None
        if isinstance(outcome, RetryAsked):
            problem = retry_delay_problem(outcome.delay)
            if problem:
                self._failed(s, Failure(failures.BAD_RESULT, f"Retry({problem})"))
            else:
                self._failed(s, Failure(failures.ERROR, outcome.message, "", outcome.delay),
                             f"it raised Retry: {outcome.message}")
            return None
        if not isinstance(outcome, Errored):     # a bug of ours: end() fails the job as bad_result
            raise TypeError(f"not an Outcome: {outcome!r:.80}")
        self._failed(s, Failure(failures.ERROR, outcome.message, outcome.traceback))
        return None

    def _asked(self, s: Started) -> str | None:
        """What a standing cancel request of a job that returned asked, or None: as its
        probe saw it, with one more look for a job that ran past CANCEL_POLL (short
        jobs cost no round trip; a request in their last second may be missed here,
        not by the broker, which ends the job as cancelled on its ack all the same)."""
        if s.probe is not None and self.clock() - s.started >= CANCEL_POLL:
            s.probe()
        return s.probe.asked if s.probe is not None else None

    def _context(self, s: Started) -> JobContext:
        job = s.job
        if s.probe is None:
            s.probe = CancelProbe(functools.partial(self.broker.cancel_requested, self.cfg.name, job.id))
        return JobContext(job.id, job.queue, job.task, job.attempts, s.cfg.retries + 1, self.index,
                          tuple(job.args), job.kwargs, scheduled_for=job.scheduled_for, cancel_probe=s.probe)

    def _invoke(self, s: Started):
        job = s.job
        if job.task == failures.HOOK_TASK:
            return self._run_failure_hook(*job.args)
        return s.info.func(*job.args, **job.kwargs)

    def _call(self, s: Started):
        reset = set_current(self._context(s))
        scoped = _OUTSIDE
        try:
            if self.scope is not None:
                scoped = self.scope.enter()
            for hook in self.before_job:
                self.aio.call(hook, s.job.info())
            value = self._invoke(s)
            if inspect.isawaitable(value):        # a plain function that handed back a coroutine
                value = self.aio.run(_bounded(value, s))
            return value
        finally:
            if scoped is not _OUTSIDE:
                self.scope.exit(scoped)
            reset_current(reset)

    async def _call_async(self, s: Started):
        reset = set_current(self._context(s))
        scoped = _OUTSIDE
        try:
            if self.scope is not None:
                scoped = await self.scope.aenter()
            for hook in self.before_job:
                result = hook(s.job.info())
                if inspect.isawaitable(result):
                    await result
            value = self._invoke(s)
            if inspect.isawaitable(value):
                value = await value
            return value
        finally:
            if scoped is not _OUTSIDE:
                await self.scope.aexit(scoped)
            reset_current(reset)

    def _run_failure_hook(self, spec, task_name, job_info, error):
        """Only hooks this service configured can run: a forged hook job can't name code."""
        if spec == "task":
            info = tasks.lookup(task_name)
            hook = info.on_failure if info else None
            if isinstance(hook, str):
                hook = import_string(hook)
        else:
            hook = import_string(self.cfg.on_failure) if self.cfg.on_failure else None
        if hook is None:
            raise LookupError(f"no on_failure hook for {task_name!r} ({spec})")
        return hook(job_info, error)

    def _ack(self, job, value, started, counted: bool = False) -> Ack:
        ms = (self.clock() - started) * 1000
        record = ""
        if self.cfg.result_ttl:
            fields = {"task": job.task, "attempts": job.attempts, "result": value,
                      "finished_at": round(time.time(), 3), "duration_ms": round(ms, 3)}
            record = result_record(fields)
        if not counted:
            self.tally.ended(job.task, "done", "", ms / 1000)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("job done", extra=self._extra(job, ms, "done"))
        return Ack(job.id, job.token, record, self.cfg.result_ttl, job.attempts <= 1)

    def _failed(self, s: Started, failure: Failure, did: str = "") -> None:
        """Settle a failed attempt by the task's policy; count and log what became of it."""
        job, info, kind, message = s.job, s.info, failure.kind, failure.message
        settled = settle_failure(self.broker, self.cfg.name, job, failure, s.cfg,
                                 info is not None and info.on_failure is not None)
        task = job.task if info is not None else UNREGISTERED
        if settled.outcome == "cancelled":
            did = did or {failures.ERROR: f"it raised {message.removesuffix(': ')}",
                          failures.TIMEOUT: f"it {message}"}.get(kind, f"its outcome: {kind}, {message}")
            return self._cancelled(job, task, settled.asked, f"asked to stop, {did}", s.started)
        ms = (self.clock() - s.started) * 1000
        if settled.outcome != "stale":
            self.tally.ended(task, settled.outcome, kind, ms / 1000)
        level = logging.WARNING if settled.outcome == "retried" else logging.ERROR
        log.log(level, "job %s: %s", settled.outcome, message, extra=self._extra(job, ms, settled.outcome))

    def _cancelled(self, job, task, asked, did, started) -> None:
        """A cancel request ended the job: counted and logged as cancelled, with what it asked."""
        ms = (self.clock() - started) * 1000
        self.tally.ended(task, "cancelled", asked, ms / 1000)
        log.warning(cancelled_line(asked, did), extra=self._extra(job, ms, "cancelled"))

    def _refuse_job(self, job, kind, message, slot=0):
        settled = settle_failure(self.broker, self.cfg.name, job, Failure(kind, message), self.cfg)
        if settled.outcome == "cancelled":
            return self._cancelled(job, UNREGISTERED, settled.asked, f"refused: {message}", self.clock())
        if settled.outcome != "stale":
            self.tally.count(UNREGISTERED, "failed", kind)     # a name nobody registered is no label
        self.scoreboard.count_failed()
        log.error("job refused: %s", message, extra=self._extra(job, 0, kind))

    def _refuse(self, token, envelope, kind, message, slot=0):
        job_id, attempts = jobmod.split_header(envelope)
        job = jobmod.Job(id=job_id, task="?", attempts=attempts, queue=self.cfg.name,
                         token=token, envelope=envelope)
        self._refuse_job(job, kind, message, slot)

    def _extra(self, job, ms, result):
        return {"queue": job.queue, "job_id": job.id, "task": job.task, "attempt": job.attempts,
                "duration_ms": round(ms, 3), "outcome": result, "worker": self.index}


class _CancelWatch:
    """An async job asked to stop (Client.cancel) is cancelled as at its timeout; its
    standing request then makes its settling end it as cancelled. Looks once a second
    after its first second (current_job().cancelled's probe). A timer, not a task:
    a job that ends within its first second costs one call_later and its cancel,
    where a task took two more steps on the loop, queued behind other jobs' work.
    The look itself asks the broker beside the loop (EventLoop.off_loop): a slow
    broker then delays this job's cancel, not every job on the loop."""
    __slots__ = ("s", "loop", "aio", "handle", "ended")

    def __init__(self, s: Started, loop, aio: EventLoop):
        self.s, self.loop, self.aio, self.ended = s, loop, aio, False
        self.handle = loop.call_later(CANCEL_POLL, self.look)

    def look(self) -> None:
        if self.s.probe is None:
            self.handle = self.loop.call_later(CANCEL_POLL, self.look)
        else:
            self.aio.off_loop(self.s.probe).add_done_callback(self.looked)

    def looked(self, answer) -> None:
        if self.ended:
            return
        if not answer.cancelled() and answer.exception() is None and answer.result():
            self.s.task.cancel()
        else:
            self.handle = self.loop.call_later(CANCEL_POLL, self.look)

    def cancel(self) -> None:
        self.ended = True
        self.handle.cancel()


def _expire(s: Started) -> None:
    s.timed_out = True
    s.task.cancel()


async def _bounded(awaitable, s: Started):
    """Await what a plain task handed back, cancelled at the job's timeout."""
    s.task = asyncio.current_task()
    timer = asyncio.get_running_loop().call_later(max(0.0, s.started + s.cfg.timeout - time.monotonic()), _expire, s)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if s.timed_out:
            raise _Expired() from None
        raise
    finally:
        timer.cancel()


def retry_delay_problem(delay) -> str | None:
    """Why `Retry(delay=...)` can't be honoured, or None (the producers' rule)."""
    problem = None if delay is None else delay_problem(delay)
    return f"delay={delay!r:.80}: {problem}" if problem else None
