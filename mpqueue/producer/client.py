"""The producer API: push jobs by task name. Needs only the broker, not a running
service, and never imports task code (except inline, for `sync://`)."""
from __future__ import annotations

import datetime as dt
import math
import time

from ..brokers import open_broker
from ..core import envelope as jobmod
from ..core import names
from ..core.config import load_config
from ..core.retry import MAX_DELAY, delay_problem


class Client:
    def __init__(self, broker_url: str, broker=None, max_payload: int = 1 << 20, inline=None):
        self.url = broker_url
        if broker is None and names.is_inline(broker_url):
            from .inline import Inline      # only sync:// users pay for importing the runner
            inline = Inline()
        self.inline = inline                # runs each pushed job before push() returns
        self.broker = broker or (inline.broker if inline else open_broker(broker_url))
        self.max_payload = max_payload
        self._known_queues: set[str] = set()

    @classmethod
    def from_config(cls, path) -> "Client":
        cfg = load_config(path)
        inline = None
        if names.is_inline(cfg.broker):
            # Inline jobs follow the config's queue settings and import its task modules.
            from .inline import Inline
            inline = Inline(cfg)
        return cls(cfg.broker, broker=inline.broker if inline else None, max_payload=cfg.max_payload,
                   inline=inline)

    def push(self, queue: str, task: str, args=(), kwargs=None, delay: float | None = None,
             eta=None, priority: int = 0) -> str:
        """Enqueue one job; returns its id. `delay` seconds or `eta` (datetime or epoch
        seconds) for later; priority 0..9, higher first."""
        job_id, item = self._item(task, args, kwargs, delay, eta, priority)
        self._remember(queue)
        self.broker.push(queue, [item])
        if self.inline:
            self.inline.pushed(queue)
        return job_id

    def push_many(self, queue: str, jobs, chunk: int = 1000) -> list[str]:
        """Enqueue many jobs in few round trips. `jobs` yields dicts with the keys of
        push(): task, and optionally args, kwargs, delay, eta, priority."""
        ids, items = [], []
        for spec in jobs:
            job_id, item = self._item(spec["task"], spec.get("args", ()), spec.get("kwargs"),
                                      spec.get("delay"), spec.get("eta"), spec.get("priority", 0))
            ids.append(job_id)
            items.append(item)
        self._remember(queue)
        for i in range(0, len(items), chunk):
            self.broker.push(queue, items[i:i + chunk])
        if self.inline and items:
            self.inline.pushed(queue)
        return ids

    def _item(self, task, args, kwargs, delay, eta, priority):
        job_id, envelope = jobmod.encode(task, args, kwargs, priority, max_payload=self.max_payload)
        return job_id, (envelope, priority, _delay_seconds(delay, eta))

    def _remember(self, queue: str) -> None:
        if queue not in self._known_queues:
            _check_queue_name(queue)
            self.broker.add_queues([queue])
            self._known_queues.add(queue)

    def close(self) -> None:
        self.broker.close()


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
            raise jobmod.PayloadError(f"eta: {eta!r:.80} is more than {MAX_DELAY:g} s from now")
        return max(0.0, seconds)
    if delay is None:
        return 0.0
    problem = delay_problem(delay)
    if problem:
        raise jobmod.PayloadError(f"delay: {problem}, got {delay!r:.80}")
    return float(delay)


def _eta_epoch(eta) -> float:
    if isinstance(eta, dt.datetime):
        try:
            return (eta if eta.tzinfo else eta.astimezone()).timestamp()
        except (OverflowError, OSError, ValueError) as exc:
            raise jobmod.PayloadError(f"eta: {eta!r:.80} is not a usable time ({exc})") from None
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta):
        raise jobmod.PayloadError(f"eta: expected a datetime or finite epoch seconds, got {eta!r:.80}")
    return float(eta)
