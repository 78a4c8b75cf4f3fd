"""Brokers by URL scheme."""
from __future__ import annotations

from urllib.parse import urlsplit

from .base import Ack, Broker, BrokerError, Held, Reserved, Waiter

__all__ = ["Ack", "Broker", "BrokerError", "Held", "Reserved", "Waiter", "open_broker"]


def open_broker(url: str, **kw) -> Broker:
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisBroker
        return RedisBroker(url, **kw)
    if scheme == "sqlite":
        from .sqlite import SQLiteBroker
        return SQLiteBroker(url, **kw)
    if scheme == "sync":
        from .sync import SyncBroker
        return SyncBroker(url, **kw)
    raise BrokerError(f"broker: unsupported URL scheme {scheme!r} in {url!r}")
