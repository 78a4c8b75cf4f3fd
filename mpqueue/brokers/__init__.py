"""Brokers by URL scheme. Each backend implements base.Broker and passes the one
contract suite in tests/contract/. Imports core only."""
from __future__ import annotations

from ..core.names import INLINE_SCHEME, redact
from ..core.redis_url import SCHEMES as REDIS_SCHEMES, split_url
from .base import COUNT_KEYS, FALLBACK_WAIT, Ack, Broker, BrokerError, Held, NotReplicated, Reserved, Tick, Waiter
from .data_format import DataFormatError

__all__ = ["Ack", "Broker", "BrokerError", "COUNT_KEYS", "DataFormatError", "FALLBACK_WAIT", "Held",
           "NotReplicated", "Reserved", "Tick", "Waiter", "open_async_pusher", "open_broker"]


def open_broker(url: str, **kw) -> Broker:
    scheme = split_url(url).scheme
    if scheme in REDIS_SCHEMES:
        from .redis import RedisBroker
        return RedisBroker(url, **kw)
    if scheme == "sqlite":
        from .sqlite import SQLiteBroker
        return SQLiteBroker(url, **kw)
    if scheme == INLINE_SCHEME:
        raise BrokerError("sync:// is not a broker: it runs each job inside the process that pushes "
                          "it (mpqueue.connect or Client), so nothing else can see or run its jobs; use "
                          "sqlite:///PATH or redis://HOST")
    raise BrokerError(f"broker: unsupported URL scheme {scheme!r} in {redact(url)!r}")


def open_async_pusher(broker: Broker):
    """The awaitable push side of an open broker (push, add_queues, aclose, close):
    redis.asyncio for one Redis server, the broker's own calls on a thread for the
    others (SQLite; Sentinel and Cluster, whose routing and failover live in the
    sync broker; pushes that WAIT for replicas)."""
    target = getattr(broker, "target", None)
    if target is not None and target.kind == "single" and not target.wait_replicas:
        from .redis_async import AsyncRedisPusher
        return AsyncRedisPusher(broker)
    from .threaded import ThreadedPusher
    return ThreadedPusher(broker)
