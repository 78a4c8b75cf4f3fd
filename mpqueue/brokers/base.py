"""The broker interface: every state change of a job is one atomic call here.

A broker stores, per queue: ready jobs (by priority, FIFO within one), delayed
jobs (by due time, on the broker's clock), reserved jobs (who holds them, under
which token, until which lease deadline), the failed store, done records with a
TTL, and totals. Every method that changes state does it in one atomic step, so
a process killed between two calls leaves every job where it was or where it
was going.

Two contracts: `Lifecycle`, what producers, workers and the supervisor need
to move jobs (push, reserve, ack, retry, release, fail, extend, recovery
reads, wake-ups), and `Inspection`, what `mpqctl`, status lines and a
dashboard read and administer. A backend is a new module implementing
`Broker` (both) and passing tests/contract/.
"""
from __future__ import annotations

import abc
import contextlib

from ..core.limits import RateLimit
from .records import Ack, Held, PushItem, Reserved, Tick   # noqa: F401 - the contract's values, here too


# The shape of counts(): mpqctl's columns and the dashboard's, in this order.
# throttled_total: reserves a rate limit cut short while jobs waited (core/limits.py), every node's
COUNT_KEYS = ("ready", "scheduled", "running", "failed", "done_total", "failed_total", "throttled_total")
# Wake-ups are hints: whoever waits on one re-checks the broker at least this
# often (seconds), so a lost hint delays a job, never strands it.
FALLBACK_WAIT = 60.0
# A caller waiting for a job's end (Client.result) re-checks the job at least
# this often (seconds): the end may be told by a hint that got lost (a failover)
# or not at all (`mpqctl clean` dropped the job). A watch lasts three of these.
RESULT_RECHECK = 10.0
WATCH_TTL = 3 * RESULT_RECHECK
# Throughput history (record_history): one point per queue per minute, kept a day.
HISTORY_EVERY_MS = 60_000
HISTORY_KEEP_MS = 24 * 3600 * 1000


class BrokerError(Exception):
    """The broker could not be reached or answered with an error."""


class NotReplicated(BrokerError):
    """A push the broker's master holds, but fewer replicas than the URL's
    wait_replicas confirmed within wait_timeout: a failover now could lose it."""


class Waiter(abc.ABC):
    """A selectable hint that work may be waiting. Hints may be lost or repeated:
    a waker always re-checks the broker, and waits with a fallback timeout."""

    @abc.abstractmethod
    def fileno(self) -> int: ...

    @abc.abstractmethod
    def drain(self) -> list:
        """Consume pending hints (call after select() said readable). Returns the
        (token, envelope) of jobs a push handed straight to this waiter's consumer:
        they are reserved for it exactly as by reserve()."""

    @abc.abstractmethod
    def close(self) -> None: ...


class Lifecycle(abc.ABC):
    """Moving jobs: every method that changes state does it in one atomic step."""

    # -- producers
    @abc.abstractmethod
    def push(self, queue: str, items: list[PushItem]) -> list[int]:
        """Enqueue items in one atomic step. An item with a caller_id (the envelope's
        id, chosen by the caller) is pushed only if no job with that id is waiting,
        scheduled or running, and then replaces that id's old done or failed record.
        Returns the positions of the items not pushed for that reason."""

    @abc.abstractmethod
    def tick(self, queue: str, name: str, tick_ms: int, envelope: str, priority: int, grace_ms: int) -> Tick:
        """Claim tick `tick_ms` of schedule `name` and push its job, in one atomic
        step, so it fires once however many nodes try: fired when the schedule has a
        record, no tick at or after it was claimed and it is at most `grace_ms` late
        on the broker's clock (then the envelope is enqueued as by push); otherwise
        see Tick."""

    # -- consumers
    @abc.abstractmethod
    def reserve(self, queue: str, consumer: str, count: int, lease: float, acks: list[Ack] = (), *,
                leave_idle: bool = False, join_idle: bool = False,
                rate: RateLimit | None = None) -> tuple[list[Reserved], float | None]:
        """Ack `acks`, promote due delayed jobs, then reserve up to `count` jobs for
        `consumer` with a lease of `lease` seconds. Returns (reserved, seconds
        until the next delayed job is due or None). Each reservation has a fresh
        token; its attempt count is incremented. `leave_idle`: the consumer was
        on the idle list and leaves it; `join_idle`: if nothing was reserved it
        joins the idle list, and a push may then hand it a job through its
        waiter. A broker without hand-over ignores both. `rate`: the queue's
        rate limit, shared by every consumer that passes it (core/limits.py):
        fewer jobs are reserved when it allows fewer, and the seconds returned
        are then no later than when it next allows one; a consumer with a rate
        does not join the idle list."""

    @abc.abstractmethod
    def ack(self, queue: str, acks: list[Ack]) -> int:
        """Acknowledge finished jobs; returns how many tokens still owned their job."""

    # retry, release and fail return True, or False when `token` no longer owns the
    # job (a stale worker); a job with a standing cancel request ends as cancelled
    # instead (no retry, no failure hook), and they return what it asked: 'ask' or
    # 'kill' (truthy too), so the caller can log and count it as cancelled.
    @abc.abstractmethod
    def retry(self, queue: str, job_id: str, token: str, delay: float, error: str) -> bool | str:
        """Return a job for another attempt after `delay` s (the attempt is spent)."""

    @abc.abstractmethod
    def release(self, queue: str, job_id: str, token: str) -> bool | str:
        """Hand a job back unrun (graceful stop): attempt refunded, front of its queue."""

    @abc.abstractmethod
    def fail(self, queue: str, job_id: str, token: str, error: str, hook: str | None = None) -> bool | str:
        """Move a job to the failed store; enqueue `hook` (an envelope) in the same step."""

    @abc.abstractmethod
    def extend(self, queue: str, job_id: str, token: str, lease: float) -> bool:
        """Move a reservation's lease deadline to `lease` seconds from now."""

    def extend_soon(self, queue: str, job_id: str, token: str, lease: float) -> None:
        """extend() for a caller that needs no answer (a job starting): a broker may send
        it without waiting, and if it is lost the reservation keeps the lease it had."""
        self.extend(queue, job_id, token, lease)

    def confirm(self, queue: str, job_id: str, token: str, lease: float) -> None:
        """The consumer took a job a push handed to it: its lease becomes `lease`
        seconds from now (sent without waiting; a broker that never hands jobs
        over has nothing to confirm)."""

    def receipts_held(self, queue: str):
        """A context in which confirm() is committed but reaches the broker only at its
        end (see RedisBroker): around a hand-off's confirm and the pipe write after it."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def renew(self, queue: str, consumers: list[str], lease: float) -> int:
        """Move the lease deadline of every job held by `consumers` to at least
        `lease` seconds from now, in one step; returns how many were renewed."""

    @abc.abstractmethod
    def held(self, queue: str) -> list[Held]:
        """Every current reservation of the queue."""

    @abc.abstractmethod
    def expired(self, queue: str, limit: int = 100) -> list[Held]:
        """Reservations whose lease has ended."""

    @abc.abstractmethod
    def waiter(self, queue: str, consumer: str | None = None) -> Waiter:
        """A selectable wake-up hint for consumers of `queue` (and, with `consumer`,
        the channel on which pushes hand that consumer jobs)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise BrokerError unless the broker answers."""

    @abc.abstractmethod
    def check_format(self) -> int:
        """The broker's data format (data_format.py), read once per process before
        anything else reads or writes the broker (every other call checks first if
        this has not run yet), recorded if the broker has no record. Raises
        DataFormatError for a format this code does not understand, BrokerError
        while the broker can't be reached (the next call checks again)."""

    def close(self) -> None:
        pass

    # -- job handles (Client.status, result, cancel)
    @abc.abstractmethod
    def watch(self, queue: str, job_id: str) -> "JobWatch":
        """Start watching one job for its end (Client.result): from the moment this
        returns, the job's ack, failure or cancellation makes the watch readable.
        The caller then re-checks find() and waits on it."""

    @abc.abstractmethod
    def cancel(self, queue: str, job_id: str, envelope: str | None, record: str, ttl: int,
               kill: bool = False) -> str:
        """Cancel one job in one atomic step, which also locates it, at a cost that does
        not grow with the queue's depth. A waiting job (ready or scheduled) is removed
        and leaves the done record `record` (state cancelled) for `ttl` s; a running
        one gets a cancel request ('kill' if `kill`, else 'ask') that its settling
        honours. `envelope` (as find() read it) is only for a waiting job the broker
        has no index entry for (Redis: pushed by a release without the index).
        Returns 'cancelled', 'requested', 'moved' (such a job not where `envelope`
        said: read it again), or the state it had: 'done', 'failed', 'unknown'."""

    @abc.abstractmethod
    def cancel_requested(self, queue: str, job_id: str) -> str | None:
        """'ask' or 'kill' while a cancel request for a running job stands, else None."""

    @abc.abstractmethod
    def cancel_requests(self, queue: str) -> dict[str, str]:
        """{job id: 'ask' | 'kill'}: every standing request of the queue (the supervisor's look)."""


class JobWatch(Waiter):
    """A watch on one job's end. drain() returns the outcomes heard, as find()
    shapes them ({'state': 'done', ...}), or [] for a bare hint; refresh() keeps
    the watch alive (call it at each fallback re-check). wait(timeout) sleeps until
    something may be drained (True) or the timeout passes (False)."""

    def refresh(self) -> None:
        pass

    def wait(self, timeout: float | None) -> bool:
        from ..proc import readable
        return bool(readable([self], timeout))


class Inspection(abc.ABC):
    """Reading and administering queues (mpqctl, status, metrics, the dashboard)."""

    @abc.abstractmethod
    def counts(self, queue: str) -> dict:
        """{key: int for key in COUNT_KEYS}."""

    @abc.abstractmethod
    def counts_many(self, queues: list[str]) -> dict[str, dict]:
        """{queue: counts(queue)} for each of `queues`, read in one round trip where
        the backend allows (one per server on a Redis Cluster): a dashboard or a
        metrics scrape reads every queue at once."""

    @abc.abstractmethod
    def oldest_ages(self, queues: list[str]) -> dict[str, float]:
        """{queue: seconds} the oldest waiting job of each of `queues` has waited since it
        became due (ready jobs, and delayed jobs past their due time that no consumer has
        promoted yet), 0.0 where nothing waits. Cheap whatever the depth (the head of
        each priority and the earliest delayed job, no scan), one round trip per server.
        Clock: the broker's now (Redis TIME, SQLite the host's) minus the due time the
        job's envelope carries, written on its producer's clock (a skewed producer
        shows as skewed ages; a future due time counts as 0), or for a delayed job
        not yet promoted its due time on the broker's clock. A retried job counts from
        its first due time. "Oldest" is among the head of each priority: a released job
        goes to the front, so a later job there may hide an older one behind it."""

    def counts_and_ages(self, queues: list[str]) -> tuple[dict[str, dict], dict[str, float]]:
        """(counts_many(queues), oldest_ages(queues)), in one round trip where the
        backend allows (a metrics scrape reads both)."""
        return self.counts_many(queues), self.oldest_ages(queues)

    @abc.abstractmethod
    def ready_count(self, queue: str) -> int:
        """Jobs ready to run now (cheap: for status lines)."""

    @abc.abstractmethod
    def failed(self, queue: str, limit: int = 100, offset: int = 0,
               newest_first: bool = False) -> list[tuple[str, str, str]]:
        """(id, envelope, error json) of failed jobs by time of failure, oldest first
        (newest first with `newest_first`), `limit` of them after skipping `offset`:
        a page costs O(log N + limit) however many there are (a dashboard pages 100k)."""

    @abc.abstractmethod
    def delete_failed(self, queue: str, ids: list[str]) -> int:
        """Drop these jobs from the failed store, in one atomic step; returns how
        many were there (ids not in the failed store are ignored)."""

    @abc.abstractmethod
    def scheduled(self, queue: str, limit: int = 100, offset: int = 0) -> list[tuple[str, str, int]]:
        """(id, envelope, due_ms) of delayed jobs (retries waiting out their delay
        included), next due first, `limit` of them after skipping `offset` (a page
        costs O(log N + limit)); due_ms is on the broker's clock."""

    @abc.abstractmethod
    def last_errors(self, queue: str, ids: list[str]) -> dict[str, str]:
        """{id: error json} of the last failed attempt of each of these jobs that is
        waiting for (or running) another attempt; other ids are left out."""

    @abc.abstractmethod
    def run_now(self, queue: str, ids: list[str]) -> int:
        """Make these delayed jobs due now, in one atomic step: each goes to the end
        of its priority's ready jobs with its attempt count unchanged (a retry stays
        the attempt it was). Returns how many were delayed (others are ignored)."""

    @abc.abstractmethod
    def requeue_failed(self, queue: str, ids: list[str] | None) -> int:
        """Move failed jobs (all when ids is None) back to ready with attempts reset."""

    @abc.abstractmethod
    def clean(self, queue: str) -> int:
        """Drop every waiting (ready or scheduled) job; returns how many."""

    @abc.abstractmethod
    def purge_failed(self, queue: str) -> int:
        """Empty the failed store; returns how many were dropped."""

    @abc.abstractmethod
    def pause(self, queue: str) -> bool:
        """Pause the queue, in one atomic step, for every node: from now on reserve()
        reserves none of its jobs (acks folded into it still count, due delayed jobs
        still become ready) and no push or tick hands one to an idle consumer.
        Running jobs finish as usual; pushes still enqueue. It lasts until resume(),
        across restarts. True if the queue ran and is now paused, False if it was
        paused already. (Nodes of v0.1.0 know no pause and go on taking jobs.)"""

    @abc.abstractmethod
    def resume(self, queue: str) -> bool:
        """End a pause, in one atomic step that also wakes the queue's idle consumers
        (their waiters), so the jobs that waited start at once, not at the fallback
        re-check. True if the queue was paused and now runs, False if it ran already."""

    @abc.abstractmethod
    def paused(self, queues: list[str]) -> set[str]:
        """Which of `queues` are paused, read in one round trip per server (a
        dashboard or a metrics scrape reads every queue at once)."""

    @abc.abstractmethod
    def find(self, queue: str, job_id: str) -> dict | None:
        """{'state': scheduled|ready|running|done|failed, ...} or None, read as one
        snapshot (a job moving meanwhile is seen in one place, never in none) at a
        cost that does not grow with the queue's depth. None means no such job:
        never pushed, or ended longer ago than its result_ttl."""

    @abc.abstractmethod
    def ticks(self, queue: str) -> dict[str, tuple[int, int]]:
        """{schedule name: (last tick claimed, last tick fired or 0)} recorded in `queue`, epoch ms."""

    @abc.abstractmethod
    def heartbeat(self, node_id: str, info: dict, ttl: float) -> None:
        """Record a running node (for `mpqctl status`); it expires after `ttl` s."""

    @abc.abstractmethod
    def nodes(self) -> list[dict]:
        """Live nodes' last heartbeat info."""

    @abc.abstractmethod
    def forget_node(self, node_id: str) -> None:
        """Remove `node_id`'s heartbeat record at once, in one atomic step: nodes()
        no longer lists it. A supervisor calls it for its own id only, as its last
        broker call of a clean stop (its workers gone), so a stopped node is not
        shown as live until its ttl ends. Other nodes' records are untouched; an
        unknown id is no error."""

    @abc.abstractmethod
    def record_history(self, queues: list[str], every_ms: int = HISTORY_EVERY_MS,
                       now_ms: int | None = None) -> int | None:
        """Record each queue's done_total and failed_total (counts()) as the point of
        the `every_ms` interval holding now (the broker's clock, or `now_ms`), and drop
        the queue's points older than HISTORY_KEEP_MS; each queue in one atomic step,
        all of them in one round trip per server. The totals are broker-wide, so every
        node of a service may write the same interval: the latest write wins. Returns
        now on the broker's clock in ms (None for no queues)."""

    @abc.abstractmethod
    def history(self, queues: list[str], since_ms: int) -> dict[str, list[tuple[int, int, int]]]:
        """{queue: [(interval start ms, done_total, failed_total), ...]}, oldest first,
        the points of each of `queues` from `since_ms` on ([] for none), read in one
        round trip per server: a dashboard reads every queue at once."""

    @abc.abstractmethod
    def add_queues(self, names: list[str]) -> None:
        """Remember queue names so tools can list them without a config."""

    @abc.abstractmethod
    def queues(self) -> list[str]: ...


class Broker(Lifecycle, Inspection):
    """A complete backend: both contracts."""

    def async_pusher(self):
        """The awaitable push side of this broker (push, add_queues, aclose, close): by
        default its own calls on a thread (threaded.py), for a broker whose calls block."""
        from .threaded import ThreadedPusher
        return ThreadedPusher(self)
