"""Stand-ins for the supervisor's edges, shared by its unit tests (test_supervisor.py,
test_pool.py and others): a clock the test moves, a spawner that makes worker
handles without forking, and a broker that records the calls the decisions make
(a small fake of pure bookkeeping; the contract and e2e suites run the real ones)."""
from __future__ import annotations

from mpqueue import ipc
from mpqueue.brokers import BrokerError
from mpqueue.core import envelope as jobmod
from mpqueue.core.config import QueueConfig, ServiceConfig
from mpqueue.supervisor.handles import WorkerHandle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class Channel:
    """A report or control pipe that keeps what is sent and hands out what is queued."""

    def __init__(self):
        self.fd, self.inbox, self.sent = -1, [], []

    def receive(self):
        out, self.inbox = self.inbox, []
        return out

    def send(self, msg):
        self.sent.append(msg)


class Handle(WorkerHandle):
    def kill(self, reason):          # no process: record the decision
        self.killed_for = self.killed_for or reason

    def close(self):
        pass


class Spawner:
    def __init__(self, clock):
        self.clock, self.next_pid, self.handles = clock, 100, []

    def __call__(self, service, queue_cfg, index, node_id, generation, inherited, started_at):
        self.next_pid += 1
        h = Handle(self.next_pid, queue_cfg.name, index, generation, Channel(), Channel(),
                   ipc.Scoreboard(queue_cfg.concurrency, self.clock), f"{node_id}/{self.next_pid}", started_at=started_at)
        self.handles.append(h)
        return h


class Broker:
    """Records every call; `down` makes each one fail as an unreachable broker would."""

    def __init__(self):
        self.calls, self.down, self.held_jobs, self.to_reserve = [], False, [], []

    def _call(self, name, *args):
        self.calls.append((name, *args))
        if self.down:
            raise BrokerError("redis: ConnectionError: down")

    def names(self):
        return [c[0] for c in self.calls]

    def add_queues(self, names):
        self._call("add_queues", names)

    def heartbeat(self, node_id, info, ttl):
        self._call("heartbeat")

    def record_history(self, queues, every_ms=60_000, now_ms=None):
        self._call("record_history", list(queues), every_ms)
        return None if self.down else getattr(self, "broker_now_ms", None)

    def forget_node(self, node_id):
        self._call("forget_node", node_id)

    def expired(self, queue, limit=100):
        self._call("expired", queue)
        return []

    def held(self, queue):
        self._call("held", queue)
        return list(self.held_jobs)

    def cancel_requests(self, queue):
        self._call("cancel_requests", queue)
        return dict(getattr(self, "cancels", {}))

    def retry(self, queue, job_id, token, delay, error):
        return self._settle("retry", job_id, token)

    def fail(self, queue, job_id, token, error, hook=None):
        return self._settle("fail", job_id, token)

    def release(self, queue, job_id, token):
        return self._settle("release", job_id, token)

    def _settle(self, name, job_id, token):
        self._call(name, job_id)
        # like a broker: a settled reservation is no longer held (fencing by token)
        self.held_jobs = [h for h in self.held_jobs if (h.id, h.token) != (job_id, token)]
        return True

    def ready_count(self, queue):
        self._call("ready_count", queue)
        return 0

    def paused(self, queues):
        self._call("paused", list(queues))
        return set(getattr(self, "paused_queues", ()))

    def renew(self, queue, consumers, lease):
        self._call("renew", queue, sorted(consumers), lease)
        return len(consumers)

    def reserve(self, queue, consumer, count, lease, acks=(), **_):
        self._call("reserve", count)
        out, self.to_reserve = self.to_reserve[:count], self.to_reserve[count:]
        return out, None

    def waiter(self, queue, consumer=None):
        return Waiter()


class Waiter:
    def fileno(self):
        return -1

    def drain(self):
        return []

    def close(self):
        pass


def envelope(job_id="j1", attempts=1):
    _, env = jobmod.encode("tasks:work", job_id=job_id)
    return jobmod.with_attempts(jobmod.header(env), attempts)


def service(**queue):
    q = QueueConfig("q", **{"workers": 1, **queue})
    return ServiceConfig(name="svc", broker="redis://127.0.0.1:1/0", imports=("tasks",), queues={"q": q},
                         shutdown_timeout=30.0, lease_grace=2.0)


def exit_status(code=0, signal_number=None):
    return signal_number if signal_number else code << 8
