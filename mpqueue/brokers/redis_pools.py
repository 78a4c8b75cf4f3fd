"""Connection pools sized to the work, on which running out is a wait.

redis-py's pools raise when every connection is lent out (redis-py 8 caps a
pool at 100 by default): a worker running 1,000 jobs at once that all push or
settle together got "Too many connections", which a worker takes for an
unreachable broker (it exits, and its running jobs end as `crashed`). Here a
borrower that finds the pool empty waits until a connection comes back, and the
pool's size comes from what the process runs (a worker: its concurrency; a
producer: DEFAULT_CONNECTIONS, enough since result() waits share one subscriber
connection per server, see redis_watches.py).

The waiting is a mixin over whichever pool class the topology needs (a plain
pool, Sentinel's master pool), so every topology waits the same way, on both
redis-py 4.3 (Debian 12) and 8.x. Every lent connection comes back within the
socket timeout (a command's longest wait), so the wait is bounded in practice.
"""
from __future__ import annotations

import inspect
import threading

import redis as redislib
import redis.sentinel  # noqa: F401 - redislib.sentinel below

# A process that is not a worker: threads doing short commands share these.
DEFAULT_CONNECTIONS = 64
# A borrower that missed a release (it raced the refusal) looks again this often.
RETRY_EVERY = 0.5
# redis-py 4.3 wants a command name (which it ignores); 5 and later take none and
# warn when given one. Callers here may give none (resp.py asks the signature).
_NAME = inspect.signature(redislib.ConnectionPool.get_connection).parameters.get("command_name")
_NEEDS_NAME = _NAME is not None and _NAME.default is inspect.Parameter.empty


def _exhausted(exc: Exception) -> bool:
    # redis-py 8: MaxConnectionsError; 4.3: a ConnectionError; both say this.
    return "Too many connections" in str(exc)


class _Waiting:
    """get_connection() waits for a release instead of raising when the pool is full."""

    def _freed(self) -> threading.Condition:
        cond = self.__dict__.get("_mpq_freed")
        if cond is None:
            cond = self.__dict__.setdefault("_mpq_freed", threading.Condition())
        return cond

    def get_connection(self, *args, **kwargs):
        if _NEEDS_NAME and not args and "command_name" not in kwargs:
            args = ("PING",)
        freed = self._freed()
        while True:
            with freed:
                seen = self.__dict__.get("_mpq_released", 0)
            try:
                return super().get_connection(*args, **kwargs)
            except redislib.exceptions.ConnectionError as exc:
                if not _exhausted(exc):
                    raise
            with freed:
                if self.__dict__.get("_mpq_released", 0) == seen:
                    freed.wait(RETRY_EVERY)

    def release(self, connection) -> None:
        super().release(connection)
        freed = self._freed()
        with freed:
            self.__dict__["_mpq_released"] = self.__dict__.get("_mpq_released", 0) + 1
            freed.notify()


class WaitingPool(_Waiting, redislib.ConnectionPool):
    pass


class WaitingSentinelPool(_Waiting, redislib.sentinel.SentinelConnectionPool):
    pass


def waiting_client(client, size: int):
    """`client` (a redis.Redis with a plain pool, no connection made yet) on a
    WaitingPool of `size` connections with the same connection settings."""
    old = client.connection_pool
    client.connection_pool = WaitingPool(connection_class=old.connection_class, max_connections=size,
                                         **old.connection_kwargs)
    return client
