"""The executor of a worker with `concurrency` > 1, its slots: up to that many
jobs at once, async tasks on the worker's event loop (its own thread), plain
tasks in a pool of that many threads. The worker's main thread keeps every
broker call and every decision: it starts jobs (`start`), records their
outcomes when they end (`collect`, woken through a pipe) and watches their
deadlines (`check`). It never holds jobs in waiting itself: what the loop
should have in hand beyond its free slots is wanted()'s prefetch rule.

Timeouts. An async job is cancelled at its timeout by the loop itself and, once
cancelled, fails as `timeout` like any outcome: its siblings run on. A job that
can't be stopped (a plain task in a thread overran, an async one did not finish
cancelling within CANCEL_GRACE, or one blocks the loop for longer than the
shortest running timeout) makes the worker give up: it takes no more jobs,
marks that job's slot overdue and tells the supervisor, which kills the worker,
fails that job as `timeout` and hands the others back unspent."""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

from .. import ipc
from ..brokers import BrokerError
from ..execution.aio import TICK
from ..execution.outcome import Errored, Outcome
from ..execution.runner import CANCEL_GRACE, Runner, Started
from .units import PREFETCH_BUDGET, Unit, exit_unsettled

log = logging.getLogger("mpqueue.worker")
BACKSTOP = 1.0          # the supervisor's deadline is this much after ours: for a main thread that is stuck
STALL_LIMIT = 10 * TICK  # a loop silent this long while its job's cancel is due is blocked, not slow


class Slots:
    """`report`: the channel to the supervisor (OVERDUE)."""

    def __init__(self, runner: Runner, size: int, report: ipc.Channel, clock=time.monotonic):
        self.runner, self.size, self.report, self.clock = runner, size, report, clock
        self.queue = runner.cfg.name
        self.free_slots = list(range(size - 1, -1, -1))      # pop() hands out the lowest
        self.running_jobs: dict[int, Started] = {}            # slot -> its job
        self.units: dict[int, Unit] = {}                      # slot -> the unit it came as
        self.overran = False        # gave up on a job: take no more, wait to be killed
        self.avg = None             # seconds per job, recent average (None: no job ended yet)
        self._threads = None        # made on the first plain job
        self._done = queue.SimpleQueue()
        self._to_loop: list[Started] = []
        self._refused: list[Unit] = []   # refused at start(): ended, reported on the next collect()
        self._woken = False
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._r

    def fds(self) -> list:
        return [self]

    def free(self) -> int:
        return 0 if self.overran else len(self.free_slots)

    def running(self) -> int:
        return len(self.running_jobs)

    def job_ids(self) -> set[str]:
        return {s.job.id for s in self.running_jobs.values()}

    def wanted(self, prefetch: int, held: int) -> int:
        """How many jobs to have in hand: one per free slot, plus a few to start the
        moment a slot frees (no round trip first) when jobs are short: no more than
        slots free up in about PREFETCH_BUDGET, judged by recent jobs, so a job
        never waits long in our hands while another worker idles."""
        free = self.free()
        extra = 0
        if (free or held) and self.avg is not None:
            extra = min(prefetch - 1, int(PREFETCH_BUDGET * self.size / max(self.avg, 1e-6)))
        return free + max(0, extra) - held

    def blocks(self, unit: Unit) -> bool:
        return False                # jobs run beside the main thread: an ack owed never waits behind one

    # -- starting and ending
    def start(self, unit: Unit) -> None:
        """Begin a job in the lowest free slot; it runs once kick() hands it over.
        One refused (settled already) ends at once."""
        slot = self.free_slots.pop()
        try:
            s = self.runner.begin(unit.token, unit.envelope, slot, backstop=BACKSTOP)
        except BrokerError as exc:       # refusing it, or stretching its lease, needs the broker
            exit_unsettled(exc, self.queue)
        if s is None:
            self.free_slots.append(slot)
            self._refused.append(unit)
            return
        self.running_jobs[slot], self.units[slot] = s, unit
        if s.is_async:
            self._to_loop.append(s)
        else:
            if self._threads is None:
                self._threads = _Threads(self.size, self.runner.execute, self._ended)
            self._threads.submit(s, len(self.running_jobs))

    def kick(self) -> None:
        """Hand the async jobs begun since the last kick to the loop, in one wake-up."""
        if self._to_loop:
            batch, self._to_loop = self._to_loop, []
            self.runner.aio.ensure().call_soon_threadsafe(self._spawn, batch)

    def _spawn(self, batch) -> None:
        # On the loop's thread.
        for s in batch:
            task = self.runner.aio.create_job_task(self._run(s), s.job.id)
            task.add_done_callback(lambda t, s=s: self._unfinished(s, t))

    async def _run(self, s: Started) -> None:
        # The outcome goes to the main thread from inside the task, the moment it is
        # known: a done callback runs a loop turn later, behind every step that got
        # ready meanwhile (other jobs' work: ~1 ms per job under load).
        self._ended(s, await self.runner.execute_async(s))

    def _unfinished(self, s: Started, task) -> None:
        # The task's end: a job that _run did not report (its task was cancelled before
        # its first step, or execute_async broke its promise to never raise) ends here.
        if task.cancelled() or task.exception() is not None:
            self._ended(s, _outcome(task))

    def _ended(self, s: Started, outcome) -> None:
        # On the job's thread (or the loop's): hand over, and wake the main thread
        # unless a wake-up is already on its way (it clears the flag, then reads).
        # Once per job: a _run whose report raised (the wake-up) reaches _unfinished
        # too, and a second end would record its outcome twice and free its slot twice.
        if s.reported:
            return
        s.reported = True
        self._done.put((s, outcome))
        if not self._woken:
            self._woken = True
            try:
                os.write(self._w, b"x")
            except BlockingIOError:
                pass                     # the pipe is full: the main thread is awake anyway

    def collect(self) -> list:
        """Record the outcome of every job that ended: (unit, its Ack or None) each.
        A broker that can't record one makes the worker exit."""
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        self._woken = False
        out, self._refused = [(u, None) for u in self._refused], []
        while True:
            try:
                s, outcome = self._done.get_nowait()
            except queue.Empty:
                return out
            try:
                ack = self.runner.end(s, outcome)
            except BrokerError as exc:
                exit_unsettled(exc, self.queue)
            took = self.clock() - s.started
            self.avg = took if self.avg is None else self.avg + (took - self.avg) * 0.2
            del self.running_jobs[s.slot]
            self.free_slots.append(s.slot)
            out.append((self.units.pop(s.slot), ack))

    # -- deadlines
    def next_check(self, now: float) -> float:
        """Seconds until check() has something to look at."""
        times = [(s.started + s.cfg.timeout + (CANCEL_GRACE if s.is_async else 0.0)) - now
                 for s in self.running_jobs.values()]
        if any(s.is_async for s in self.running_jobs.values()):
            times.append(TICK * 2)       # watch the loop turn
        return max(0.0, min(times, default=float("inf")))

    def check(self, now: float) -> None:
        if self.overran or not self.running_jobs:
            return
        stalled = now - self.runner.aio.turned if self.runner.aio.started() else 0.0
        for s in list(self.running_jobs.values()):
            due = s.started + s.cfg.timeout
            if now < due:
                continue
            if not s.is_async:
                return self.give_up(s, "overran its timeout in a thread, which can't be interrupted")
            if now >= due + CANCEL_GRACE:
                if stalled > STALL_LIMIT:
                    return self.give_up(self.blocker() or s, "blocks the event loop")
                return self.give_up(s, f"did not finish cancelling within {CANCEL_GRACE:g} s of its timeout")
        on_loop = [s for s in self.running_jobs.values() if s.is_async]
        if on_loop and stalled > min(s.cfg.timeout for s in on_loop):
            self.give_up(self.blocker() or min(on_loop, key=lambda s: s.started),
                         f"blocked the event loop for {stalled:.1f} s")

    def give_up(self, s: Started, why: str) -> None:
        self.overran = True
        log.error("job %s %s: this worker takes no more jobs and will be replaced; its other jobs go back "
                  "unspent", s.job.id, why, extra={"queue": s.job.queue, "job_id": s.job.id, "task": s.job.task,
                                                   "outcome": "timeout"})
        self.runner.scoreboard.overdue(s.slot, s.job.id, s.job.token, s.started)
        try:
            self.report.send({"type": ipc.OVERDUE, "id": s.job.id})
        except OSError:
            pass                         # the supervisor is gone; we die with it

    def blocker(self) -> Started | None:
        """The async job whose task the loop's thread is running a step of right now
        (aio.py records it around each step): the one blocking it."""
        job_id = self.runner.aio.stepping()
        return next((s for s in self.running_jobs.values() if s.job.id == job_id), None)

    def close(self) -> None:
        self.runner.aio.close()


def _outcome(task) -> Outcome:
    try:
        return task.result()
    except BaseException as exc:  # noqa: BLE001 - execute_async() never raises; a cancelled task can
        return Errored(f"{type(exc).__name__}: the job was interrupted")


class _Threads:
    """The plain jobs' threads: each takes the next job from one queue, runs it and
    hands the outcome back. Lighter per job than a ThreadPoolExecutor (no Future),
    which counts when the main thread starts a burst of jobs. Threads are made as
    the number of running jobs first needs them; daemons, so a job that never
    returns can't hold the process's exit."""

    def __init__(self, size: int, execute, ended):
        self.size, self.execute, self.ended = size, execute, ended
        self.jobs = queue.SimpleQueue()
        self.threads = 0

    def submit(self, s: Started, running: int) -> None:
        if self.threads < min(self.size, running):
            self.threads += 1
            threading.Thread(target=self._serve, name=f"mpqueue-job-{self.threads}", daemon=True).start()
        self.jobs.put(s)

    def _serve(self) -> None:
        while True:
            s = self.jobs.get()
            self.ended(s, self.execute(s))
