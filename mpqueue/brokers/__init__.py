"""Brokers by URL scheme. Each backend implements base.Broker and passes the one
contract suite in tests/contract/. Imports core only."""
from __future__ import annotations

from ..core.names import INLINE_SCHEME, redact
from ..core.redis_url import SCHEMES as REDIS_SCHEMES, split_url
from .base import (COUNT_KEYS, FALLBACK_WAIT, Ack, Broker, BrokerError, Held, NotReplicated, PushItem, Reserved,
                   Tick, Waiter)
from .data_format import DataFormatError

__all__ = ["Ack", "Broker", "BrokerError", "COUNT_KEYS", "DataFormatError", "FALLBACK_WAIT", "Held",
           "NotReplicated", "PushItem", "Reserved", "Tick", "Waiter", "open_broker"]


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

