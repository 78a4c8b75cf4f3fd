"""The producer API: push jobs by task name. Needs only the broker, not a running
service, and never imports task code."""
from __future__ import annotations

import datetime as dt
import os
import time

from . import job as jobmod
from .brokers import open_broker

_default = None


class Client:
    def __init__(self, broker_url: str, broker=None, max_payload: int = 1 << 20):
        self.url = broker_url
        self.broker = broker or open_broker(broker_url)
        self.max_payload = max_payload
        self._known_queues: set[str] = set()

    @classmethod
    def from_config(cls, path) -> "Client":
        from .config import load_config
        cfg = load_config(path)
        broker = None
        if cfg.broker.startswith("sync:"):
            # Inline jobs follow the config's queue settings and import its task modules.
            from .brokers.sync import SyncBroker
            broker = SyncBroker(cfg.broker, service=cfg)
        return cls(cfg.broker, broker=broker, max_payload=cfg.max_payload)

    def push(self, queue: str, task: str, args=(), kwargs=None, delay: float | None = None,
             eta=None, priority: int = 0) -> str:
        """Enqueue one job; returns its id. `delay` seconds or `eta` (datetime or epoch
        seconds) for later; priority 0..9, higher first."""
        job_id, item = self._item(task, args, kwargs, delay, eta, priority)
        self._remember(queue)
        self.broker.push(queue, [item])
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
    import re
    if not isinstance(queue, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", queue):
        raise jobmod.PayloadError(f"queue: expected a name of letters, digits, '_', '.', '-', got {queue!r}")


def _delay_seconds(delay, eta) -> float:
    """A due time as seconds from now; the broker adds it to its own clock."""
    if delay is not None and eta is not None:
        raise jobmod.PayloadError("give delay or eta, not both")
    if eta is not None:
        if isinstance(eta, dt.datetime):
            if eta.tzinfo is None:
                eta = eta.astimezone()
            eta = eta.timestamp()
        return max(0.0, float(eta) - time.time())
    if delay is None:
        return 0.0
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise jobmod.PayloadError(f"delay: expected seconds >= 0, got {delay!r}")
    return float(delay)


def set_default_client(client: Client | None) -> None:
    """The client `task.push()` uses in this process (workers set their service's)."""
    global _default
    _default = client


def connect(broker_url_or_config: str) -> Client:
    """Point `task.push()` in this process at a broker URL or a service's YAML file."""
    if "://" in broker_url_or_config:
        client = Client(broker_url_or_config)
    else:
        client = Client.from_config(broker_url_or_config)
    set_default_client(client)
    return client


def default_client() -> Client:
    if _default is None:
        url, cfg = os.environ.get("MPQUEUE_BROKER"), os.environ.get("MPQUEUE_CONFIG")
        if url or cfg:
            return connect(url or cfg)
        raise RuntimeError("no broker configured for task.push(): call mpqueue.connect(URL or "
                           "config path) or set MPQUEUE_BROKER / MPQUEUE_CONFIG")
    return _default
