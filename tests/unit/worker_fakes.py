"""Fakes for the worker's unit tests (test_sources, test_executor,
test_worker_loop): a clock the test moves, an in-memory broker with just the
calls a worker's source makes, a control line with no pipe, and a runner that
"runs" a job by moving the clock. No processes, no sockets."""
from __future__ import annotations

import itertools

from mpqueue.brokers import BrokerError
from mpqueue.brokers.base import Ack, Held, Reserved
from mpqueue.core import envelope as jobmod


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def envelope(task: str = "t:quick") -> tuple[str, str]:
    return jobmod.encode(task)


class FakeWaiter:
    def __init__(self):
        self.handed: list[tuple[str, str]] = []
        self.closed = False

    def fileno(self) -> int:
        return -1

    def drain(self) -> list:
        out, self.handed = self.handed, []
        return out

    def close(self) -> None:
        self.closed = True


class FakeBroker:
    """One queue. `down`: every call raises BrokerError, as an unreachable broker."""

    def __init__(self):
        self.ready: list[str] = []                     # envelopes, front first
        self.held_jobs: dict[str, Held] = {}           # job id -> its reservation
        self.acked: list[str] = []
        self.released: list[str] = []
        self.extended: list[str] = []
        self.confirmed: list[str] = []
        self.reserves: list[dict] = []                 # each reserve call's arguments
        self.waiters: list[FakeWaiter] = []
        self.down = False
        self._tokens = (f"tok{i}" for i in itertools.count())

    def _up(self):
        if self.down:
            raise BrokerError("connection refused")

    def push(self, n: int = 1, task: str = "t:quick") -> list[str]:
        ids = []
        for _ in range(n):
            job_id, env = envelope(task)
            self.ready.append(env)
            ids.append(job_id)
        return ids

    def reserve(self, queue, consumer, count, lease, acks=(), *, leave_idle=False, join_idle=False, rate=None):
        self._up()
        self.reserves.append(dict(count=count, acks=[a.id for a in acks], leave_idle=leave_idle,
                                  join_idle=join_idle))
        self.ack(queue, acks)
        out = []
        while self.ready and len(out) < count:
            env = self.ready.pop(0)
            token = next(self._tokens)
            self.held_jobs[jobmod.job_id(env)] = Held(jobmod.job_id(env), token, consumer, env)
            out.append(Reserved(token, env))
        return out, None

    def hand_off(self, consumer: str, task: str = "t:quick") -> str:
        """A push that hands its job straight to an idle consumer."""
        job_id, env = envelope(task)
        token = next(self._tokens)
        self.held_jobs[job_id] = Held(job_id, token, consumer, env, unconfirmed=True)
        self.waiters[-1].handed.append((token, env))
        return job_id

    def _ours(self, job_id, token) -> bool:
        held = self.held_jobs.get(job_id)
        return held is not None and held.token == token

    def ack(self, queue, acks) -> int:
        self._up()
        for a in acks:
            if self._ours(a.id, a.token):
                del self.held_jobs[a.id]
                self.acked.append(a.id)
        return len(acks)

    def extend(self, queue, job_id, token, lease) -> bool:
        self._up()
        self.extended.append(job_id)
        return self._ours(job_id, token)

    def confirm(self, queue, job_id, token, lease) -> None:
        self._up()
        self.confirmed.append(job_id)

    def release(self, queue, job_id, token):
        self._up()
        if not self._ours(job_id, token):
            return False
        self.ready.insert(0, self.held_jobs.pop(job_id).envelope)
        self.released.append(job_id)
        return True

    def held(self, queue) -> list[Held]:
        self._up()
        return list(self.held_jobs.values())

    def waiter(self, queue, consumer=None) -> FakeWaiter:
        self._up()
        self.waiters.append(FakeWaiter())
        return self.waiters[-1]


class FakeControl:
    """The control line without a pipe: waiting moves the clock by the timeout
    (capped by `max_wait`), so a test sees how long the worker would sleep."""

    def __init__(self, clock: Clock, max_wait: float = 60.0):
        self.clock, self.max_wait = clock, max_wait
        self.stopping = False
        self.inbox: list[dict] = []
        self.received = 0                 # jobs put in the inbox as sent (dispatch mode's credit)
        self.waits: list[float] = []
        self.readable: list = []          # what the next wait() returns
        self.reports: list[dict] = []

    def stop(self) -> None:
        self.stopping = True

    def look(self) -> None:
        pass

    def wait(self, fds, timeout) -> list:
        self.waits.append(timeout)
        self.clock.advance(max(0.0, min(timeout, self.max_wait)))
        readable, self.readable = self.readable, []
        return readable

    def take_jobs(self, n: int) -> list[dict]:
        jobs, self.inbox = self.inbox[:n], self.inbox[n:]
        return jobs

    def send(self, msg: dict) -> None:         # as the report channel
        self.reports.append(msg)


class FakeRunner:
    """Runs a job by moving the clock by its task's duration; an Ack for each."""

    def __init__(self, clock: Clock, durations: dict[str, float] | None = None, default: float = 0.001):
        self.clock, self.durations, self.default = clock, durations or {}, default
        self.ran: list[str] = []

    def run(self, token: str, envelope: str) -> Ack:
        self.ran.append(jobmod.job_id(envelope))
        self.clock.advance(self.durations.get(jobmod.peek_task(envelope), self.default))
        return Ack(jobmod.job_id(envelope), token, "", 0)


def add_settling(broker: FakeBroker) -> FakeBroker:
    """The calls a Runner makes to settle a failure, on a FakeBroker."""
    broker.failed, broker.retried = [], []

    def retry(queue, job_id, token, delay, error):
        broker.retried.append(job_id)
        return True

    def fail(queue, job_id, token, error, hook=None):
        broker.failed.append((job_id, error))
        return True

    broker.retry, broker.fail = retry, fail
    broker.cancel_requested = lambda queue, job_id: None
    return broker
