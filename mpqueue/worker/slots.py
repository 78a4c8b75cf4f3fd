"""A worker's slots, for a queue with `concurrency` > 1: up to that many jobs at
once, async tasks on the worker's event loop (its own thread), plain tasks in
a pool of that many threads. The worker's main thread keeps every broker call
and every decision: it starts jobs (`start`), records their outcomes when they
end (`collect`, woken through a pipe) and watches their deadlines (`check`).

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

from .. import ipc
from ..execution.aio import TICK
from ..execution.outcome import Errored, Outcome
from ..execution.runner import CANCEL_GRACE, Runner, Started

log = logging.getLogger("mpqueue.worker")
BACKSTOP = 1.0          # the supervisor's deadline is this much after ours: for a main thread that is stuck
STALL_LIMIT = 10 * TICK  # a loop silent this long while its job's cancel is due is blocked, not slow


class Slots:
    def __init__(self, worker, runner: Runner, size: int):
        self.w, self.runner, self.size = worker, runner, size
        self.free_slots = list(range(size - 1, -1, -1))      # pop() hands out the lowest
        self.running: dict[int, Started] = {}                 # slot -> its job
        self.overran = False        # gave up on a job: take no more, wait to be killed
        self._threads = None        # made on the first plain job
        self._done = queue.SimpleQueue()
        self._to_loop: list[Started] = []
        self._woken = False
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._r

    def free(self) -> int:
        return 0 if self.overran else len(self.free_slots)

    def job_ids(self) -> set[str]:
        return {s.job.id for s in self.running.values()}

    # -- starting and ending
    def start(self, token: str, envelope: str) -> None:
        """Begin a job in the lowest free slot; it runs once kick() hands it over."""
        slot = self.free_slots.pop()
        s = self.runner.begin(token, envelope, slot, backstop=BACKSTOP)
        if s is None:                   # refused and settled: the slot is free again
            self.free_slots.append(slot)
            return
        self.running[slot] = s
        if s.is_async:
            self._to_loop.append(s)
        else:
            if self._threads is None:
                self._threads = _Threads(self.size, self.runner.execute, self._ended)
            self._threads.submit(s, len(self.running))

    def kick(self) -> None:
        """Hand the async jobs begun since the last kick to the loop, in one wake-up."""
        if self._to_loop:
            batch, self._to_loop = self._to_loop, []
            self.runner.aio.ensure().call_soon_threadsafe(self._spawn, batch)

    def _spawn(self, batch) -> None:
        # On the loop's thread.
        for s in batch:
            task = self.runner.aio.create_job_task(self.runner.execute_async(s), s.job.id)
            task.add_done_callback(lambda t, s=s: self._ended(s, _outcome(t)))

    def _ended(self, s: Started, outcome) -> None:
        # On the job's thread (or the loop's): hand over, and wake the main thread
        # unless a wake-up is already on its way (it clears the flag, then reads).
        self._done.put((s, outcome))
        if not self._woken:
            self._woken = True
            try:
                os.write(self._w, b"x")
            except BlockingIOError:
                pass                     # the pipe is full: the main thread is awake anyway

    def collect(self) -> list[tuple[Started, object]]:
        """Record the outcome of every job that ended; (job, its Ack or None) each.
        Raises BrokerError when an outcome can't be recorded (the caller exits)."""
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        self._woken = False
        out = []
        while True:
            try:
                s, outcome = self._done.get_nowait()
            except queue.Empty:
                return out
            ack = self.runner.end(s, outcome)
            del self.running[s.slot]
            self.free_slots.append(s.slot)
            out.append((s, ack))

    # -- deadlines
    def next_check(self, now: float) -> float:
        """Seconds until check() has something to look at."""
        times = [(s.started + s.cfg.timeout + (CANCEL_GRACE if s.is_async else 0.0)) - now
                 for s in self.running.values()]
        if any(s.is_async for s in self.running.values()):
            times.append(TICK * 2)       # watch the loop turn
        return max(0.0, min(times, default=float("inf")))

    def check(self, now: float) -> None:
        if self.overran or not self.running:
            return
        stalled = now - self.runner.aio.turned if self.runner.aio.started() else 0.0
        for s in list(self.running.values()):
            due = s.started + s.cfg.timeout
            if now < due:
                continue
            if not s.is_async:
                return self.give_up(s, "overran its timeout in a thread, which can't be interrupted")
            if now >= due + CANCEL_GRACE:
                if stalled > STALL_LIMIT:
                    return self.give_up(self.blocker() or s, "blocks the event loop")
                return self.give_up(s, f"did not finish cancelling within {CANCEL_GRACE:g} s of its timeout")
        on_loop = [s for s in self.running.values() if s.is_async]
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
            self.w.report.send({"type": ipc.OVERDUE, "id": s.job.id})
        except OSError:
            pass                         # the supervisor is gone; we die with it

    def blocker(self) -> Started | None:
        """The async job whose task the loop's thread is running a step of right now
        (aio.py records it around each step): the one blocking it."""
        job_id = self.runner.aio.stepping()
        return next((s for s in self.running.values() if s.job.id == job_id), None)

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
