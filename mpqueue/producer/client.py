"""The producer API: push jobs by task name, from plain code (push, push_many) or
async code (apush, apush_many). Needs only the broker, not a running service, and
never imports task code (except inline, for `sync://`). Both ways build what they
push with the same code, so they check and refuse exactly alike."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time

from ..brokers import PushItem, open_broker
from ..core import envelope as jobmod
from ..core import names
from ..core.config import load_config
from ..core.retry import MAX_DELAY, delay_problem
from . import ahandles, handles
from .handles import JobHandle

log = logging.getLogger("mpqueue.producer")
_warned: set[tuple[str, str]] = set()     # (config, queue) warned of in this process

def result_ttls(cfg) -> dict[str, int]:
    """Queue -> result_ttl of a service config: what a Client made for that service
    (from_config, mpqctl, the dashboard) needs to know how long a cancel's record lasts."""
    return {name: q.result_ttl for name, q in cfg.queues.items()}


class Client:
    def __init__(self, broker_url: str, broker=None, max_payload: int = 1 << 20, inline=None, scope=None,
                 result_ttls: dict[str, int] | None = None):
        """`scope`: for sync://, the framework's per-job scope (an
        execution.runner.JobScope) each inline job runs in, as in a worker.
        `result_ttls`: queue -> its result_ttl (result_ttls(cfg)), how long a cancel's
        record lasts; a queue not in it has the default."""
        self.url = broker_url
        if broker is None and names.is_inline(broker_url):
            from .inline import Inline      # only sync:// users pay for importing the runner
            inline = Inline(scope=scope)
        self.inline = inline                # runs each pushed job before push() returns
        self.broker = broker or (inline.broker if inline else open_broker(broker_url))
        self.max_payload = max_payload
        self._known_queues: set[str] = set()
        self._async = None                  # the awaitable push side, made on the first apush
        self._result_ttls: dict[str, int] = dict(result_ttls or {})
        self._declared: tuple[str, frozenset] | None = None   # (config source, its queues), from a config
        self._calls = ahandles.Calls()      # the threads of aresult/astatus/acancel's broker calls

    @classmethod
    def from_config(cls, path, scope=None) -> "Client":
        cfg = load_config(path)
        inline = None
        if names.is_inline(cfg.broker):
            # Inline jobs follow the config's queue settings and import its task modules.
            from .inline import Inline
            inline = Inline(cfg, scope=scope)
        client = cls(cfg.broker, broker=inline.broker if inline else None, max_payload=cfg.max_payload,
                     inline=inline, result_ttls=result_ttls(cfg))
        if inline is None:                  # sync:// runs every push at once: nothing waits
            client._declared = (cfg.source or str(path), frozenset(cfg.queues))
        return client

    def push(self, queue: str, task: str, args=(), kwargs=None, delay: float | None = None,
             eta=None, priority: int = 0, job_id: str | None = None) -> JobHandle:
        """Enqueue one job; returns its id (a JobHandle: a str). `delay` seconds or `eta`
        (datetime or epoch seconds) for later; priority 0..9, higher first. `job_id`:
        an id of the caller's choice; while a job with it waits or runs, nothing is
        pushed and the handle says `duplicate`."""
        job_id, item = self._item(task, args, kwargs, delay, eta, priority, job_id)
        dups = self._deliver(queue, [item])
        return JobHandle(job_id, self, queue, duplicate=bool(dups))

    def push_many(self, queue: str, jobs, chunk: int = 1000) -> list[str]:
        """Enqueue many jobs in few round trips. `jobs` yields dicts with the keys of
        push(): task, and optionally args, kwargs, delay, eta, priority, job_id."""
        ids, items = self._items(jobs)
        dups = self._deliver(queue, items, chunk)
        return [JobHandle(i, self, queue, duplicate=n in dups) for n, i in enumerate(ids)]

    async def apush(self, queue: str, task: str, args=(), kwargs=None, delay: float | None = None,
                    eta=None, priority: int = 0, job_id: str | None = None) -> JobHandle:
        """push() for async code: the same checks, errors and id, without blocking the
        event loop (redis.asyncio for Redis, a thread for SQLite; see _adeliver)."""
        job_id, item = self._item(task, args, kwargs, delay, eta, priority, job_id)
        dups = await self._adeliver(queue, [item])
        return JobHandle(job_id, self, queue, duplicate=bool(dups))

    async def apush_many(self, queue: str, jobs, chunk: int = 1000) -> list[str]:
        """push_many() for async code."""
        ids, items = self._items(jobs)
        dups = await self._adeliver(queue, items, chunk)
        return [JobHandle(i, self, queue, duplicate=n in dups) for n, i in enumerate(ids)]

    # -- job handles (producer/handles.py): a bare id is looked for in every known queue
    def status(self, job_id: str, queue: str | None = None) -> str:
        """scheduled, ready, running, done, failed, cancelled or unknown (never pushed,
        or ended more than its queue's result_ttl ago)."""
        return handles.state_of(handles.locate(self, job_id, queue)[1])

    def result(self, job_id: str, timeout: float | None = None, queue: str | None = None):
        """Wait for the job to end (at most `timeout` s) and return its result. Raises
        JobFailed (its error), JobCancelled, ResultTimeout (a TimeoutError) or JobUnknown."""
        return handles.wait_result(self, job_id, timeout, queue)

    def cancel(self, job_id: str, kill: bool = False, queue: str | None = None) -> bool:
        """Cancel a job: a waiting one is removed and never runs; a running one is asked
        to stop (current_job().cancelled), or with `kill` its worker is killed. Either
        way it ends as cancelled. False if it had already ended or is unknown."""
        return handles.cancel(self, job_id, kill, queue)[1] in ("cancelled", "requested")

    async def astatus(self, job_id: str, queue: str | None = None) -> str:
        """status() for async code."""
        return await ahandles.status(self, job_id, queue)

    async def aresult(self, job_id: str, timeout: float | None = None, queue: str | None = None):
        """result() for async code: awaits the end without a thread per waiter."""
        return await ahandles.wait_result(self, job_id, timeout, queue)

    async def acancel(self, job_id: str, kill: bool = False, queue: str | None = None) -> bool:
        """cancel() for async code."""
        return (await ahandles.cancel(self, job_id, kill, queue))[1] in ("cancelled", "requested")

    def result_ttl(self, queue: str | None) -> int:
        """How long the queue keeps ended jobs' records (its config's, if the client has one)."""
        return self._result_ttls.get(queue, handles.DEFAULT_RESULT_TTL)

    # -- one way to build what is pushed, for both
    def _item(self, task, args, kwargs, delay, eta, priority, job_id=None):
        seconds = _delay_seconds(delay, eta)
        if job_id is None:
            job_id, envelope = jobmod.encode(task, args, kwargs, priority, max_payload=self.max_payload, delay=seconds)
            return job_id, PushItem(envelope, priority, seconds)
        if not names.is_caller_job_id(job_id):
            raise jobmod.PayloadError(f"job_id: expected {names.caller_job_id_rule()}, got {job_id!r:.80}")
        job_id, envelope = jobmod.encode(task, args, kwargs, priority, job_id=job_id, max_payload=self.max_payload,
                                         delay=seconds)
        return job_id, PushItem(envelope, priority, seconds, job_id)

    def _items(self, jobs) -> tuple[list[str], list[PushItem]]:
        ids, items = [], []
        for spec in jobs:
            job_id, item = self._item(spec["task"], spec.get("args", ()), spec.get("kwargs"),
                                      spec.get("delay"), spec.get("eta"), spec.get("priority", 0), spec.get("job_id"))
            ids.append(job_id)
            items.append(item)
        return ids, items

    def _is_new(self, queue: str) -> bool:
        """True for a queue this client has not registered yet (its name checked first)."""
        if queue in self._known_queues:
            return False
        _check_queue_name(queue)
        self._warn_if_undeclared(queue)
        return True

    def _warn_if_undeclared(self, queue: str) -> None:
        # A job on a queue no worker serves waits forever, silently: say so once
        # per process when the config this client loaded has no such queue.
        if self._declared is None or queue in self._declared[1] or (self._declared[0], queue) in _warned:
            return
        _warned.add((self._declared[0], queue))
        log.warning("pushing to queue %r, which %s does not declare (its queues: %s): no worker of that service "
                    "serves it, so its jobs wait until one does", queue, self._declared[0],
                    ", ".join(sorted(self._declared[1])) or "none")

    # -- delivery: the same steps, blocking and awaitable
    def _deliver(self, queue: str, items: list, chunk: int = 1000) -> set[int]:
        """Push; returns the positions of items not pushed (a caller's id was live)."""
        if self._is_new(queue):
            self.broker.add_queues([queue])
            self._known_queues.add(queue)
        if 0 < len(items) <= chunk:         # one call (a push() always): no chunking to pay for
            dups = set(self.broker.push(queue, items) or ())
        else:
            dups = set()
            for start, batch in _chunks(items, chunk):
                dups.update(start + n for n in self.broker.push(queue, batch) or ())
        if self.inline and items:
            self.inline.pushed(queue)
        return dups

    async def _adeliver(self, queue: str, items: list, chunk: int = 1000) -> set[int]:
        pusher = self._pusher()
        if self._is_new(queue):
            await pusher.add_queues([queue])
            self._known_queues.add(queue)
        dups = set()
        for start, batch in _chunks(items, chunk):
            dups.update(start + n for n in await pusher.push(queue, batch) or ())
        if self.inline and items:
            await self.inline.apushed(queue)
        return dups

    def _pusher(self):
        # Made on the first apush: sync-only producers never load redis.asyncio.
        if self._async is None:
            self._async = self.broker.async_pusher()     # the broker's choice
        return self._async

    def close(self) -> None:
        if self._async is not None:
            self._async.close()
        self._calls.close()
        self.broker.close()

    async def aclose(self) -> None:
        """close() for async code: closes this loop's async connections on it."""
        if self._async is not None:
            await self._async.aclose()
        self._calls.close()
        # Closing an SQLite database may checkpoint its WAL into the file: not on the loop.
        await asyncio.to_thread(self.broker.close)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield i, items[i:i + size]


def _check_queue_name(queue) -> None:
    if not names.is_queue_name(queue):
        raise jobmod.PayloadError(f"queue: expected {names.queue_rule()}, got {queue!r}")


def _delay_seconds(delay, eta) -> float:
    """A due time as seconds from now; the broker adds it to its own clock."""
    if delay is not None and eta is not None:
        raise jobmod.PayloadError("give delay or eta, not both")
    if eta is not None:
        seconds = _eta_epoch(eta) - time.time()
        if seconds > MAX_DELAY:
            raise jobmod.PayloadError(f"eta: {_show_eta(eta)} is more than {MAX_DELAY / 86400 / 365:g} years from now")
        return max(0.0, seconds)
    if delay is None:
        return 0.0
    problem = delay_problem(delay)
    if problem:
        raise jobmod.PayloadError(f"delay: {problem}, got {delay!r:.80}")
    return float(delay)


def _show_eta(eta) -> str:
    return eta.isoformat() if isinstance(eta, dt.datetime) else f"{eta!r:.80}"


def _eta_epoch(eta) -> float:
    if isinstance(eta, dt.datetime):
        try:
            return (eta if eta.tzinfo else eta.astimezone()).timestamp()
        except (OverflowError, OSError, ValueError) as exc:
            raise jobmod.PayloadError(f"eta: {_show_eta(eta)} is not a usable time ({exc})") from None
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta):
        raise jobmod.PayloadError(f"eta: expected a datetime or finite epoch seconds, got {eta!r:.80}")
    return float(eta)
