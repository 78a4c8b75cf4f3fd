"""Where a Redis broker's commands go: one server, the master that Sentinel names,
or, on a Cluster, the master that owns a queue's slot.

Every call site asks `for_queue(queue)` or `for_service()` for a Node (a plain
redis-py client of one server, with the hand-packed script caller and the
receipt sender on its pool), and reports a failed call to `after_error`, which
says whether to try again at once, after a pause, or to give up: so the
broker's calls read the same on all three, and redirects, failovers and
reshards are handled in one place.

- One server: nothing moves; errors go back to the caller (a worker backs off).
- Sentinel: redis-py's Sentinel-managed pool asks the sentinels for the master
  on every new connection, and turns READONLY from a demoted master into a
  connection error, so the next call after a failover reaches the new master.
- Cluster: the slot map comes from CLUSTER SLOTS, read from any node that
  answers (the known masters first, then the URL's seeds); MOVED and
  CLUSTERDOWN re-read it; ASK and TRYAGAIN mean the queue's slot is being
  migrated, and the call waits for the migration to end rather than run on a
  half-moved queue (every script touches keys that do not exist yet, which
  Redis refuses during a migration: see _keys.lua).
"""
from __future__ import annotations

import contextlib
import threading

import redis as redislib
import redis.sentinel  # noqa: F401 - redislib.sentinel below
from redis.crc import key_slot

from ..core.redis_url import RedisTarget
from . import resp
from .base import BrokerError
from .redis_pools import DEFAULT_CONNECTIONS, WaitingSentinelPool, waiting_client

SLOTS = 16384
# How long one call keeps retrying redirects and migrations before it reports
# the broker as unavailable (the caller then backs off as in an outage).
REDIRECT_PATIENCE = 5.0


@contextlib.contextmanager
def broker_errors():
    """redis-py's errors as BrokerError (the one kind every caller handles)."""
    try:
        yield
    except redislib.exceptions.RedisError as exc:
        raise BrokerError(f"redis: {exc.__class__.__name__}: {exc}") from exc


class Node:
    """One Redis server as the broker uses it."""

    def __init__(self, client):
        self.client = client
        self.caller = resp.ScriptCaller(client)
        self.receipts = resp.Sender(client)

    def close(self) -> None:
        self.receipts.close()
        with contextlib.suppress(Exception):
            self.client.connection_pool.disconnect()


class Nodes:
    """One server (redis://, rediss://, unix://): every key on it."""
    service_prefix = "mpq:"

    def __init__(self, target: RedisTarget, options: dict, connections: int = DEFAULT_CONNECTIONS):
        self.target, self.connections = target, connections
        self.node = self._open(options)

    def _open(self, options) -> Node:
        return Node(waiting_client(redislib.Redis.from_url(self.target.url, **options), self.connections))

    def for_queue(self, queue: str) -> Node:
        return self.node

    def for_service(self) -> Node:
        return self.node

    def all(self) -> list[Node]:
        return [self.node]

    def after_error(self, exc: Exception) -> float | None:
        """Seconds to wait before trying the call again, or None to give up."""
        return None

    def suspect(self, queue: str | None) -> None:
        """The server serving `queue` answered, but may no longer be the master (its
        replicas did not confirm a write): the next call asks again where to go."""

    def close(self) -> None:
        self.node.close()


class SentinelNodes(Nodes):
    """The master of a Sentinel-monitored group (redis+sentinel://)."""

    def _open(self, options) -> Node:
        t = self.target
        sentinel_options = {k: options[k] for k in options if k.startswith("socket_")}
        sentinel_options.update(t.sentinel_auth)
        tls = {"ssl": True, **t.tls} if t.tls is not None else {}
        if tls:
            sentinel_options.update(tls)
        self.sentinel = redislib.sentinel.Sentinel(list(t.nodes), sentinel_kwargs=sentinel_options)
        auth = {k: v for k, v in (("username", t.username), ("password", t.password),
                                  ("client_name", t.client_name)) if v is not None}
        return Node(self.sentinel.master_for(t.master, db=t.db, connection_pool_class=WaitingSentinelPool,
                                             max_connections=self.connections, **auth, **tls, **options))

    def suspect(self, queue: str | None) -> None:
        # Sentinel's pool asks the sentinels for the master on each new connection,
        # but keeps the ones it has: a master being replaced still takes writes
        # until it is demoted, seconds after the sentinels name its successor.
        self.node.close()

    def close(self) -> None:
        super().close()
        for s in self.sentinel.sentinels:
            with contextlib.suppress(Exception):
                s.connection_pool.disconnect()


class ClusterNodes(Nodes):
    """The masters of a Redis Cluster (redis+cluster://), each queue on the master
    owning its hash tag's slot. Service-wide records carry a tag of their own, so
    they sit in one slot and read without cross-slot commands."""
    service_prefix = "mpq:{mpq}:"

    def __init__(self, target: RedisTarget, options: dict, connections: int = DEFAULT_CONNECTIONS):
        self.target, self.options, self.connections = target, options, connections
        self._lock = threading.Lock()            # an async producer's threads share the map
        self._by_addr: dict[tuple, Node] = {}
        self._slots: list[tuple | None] = [None] * SLOTS
        self._stale = True
        self._refresh()

    def _client(self, addr: tuple):
        t = self.target
        auth = {k: v for k, v in (("username", t.username), ("password", t.password),
                                  ("client_name", t.client_name)) if v is not None}
        tls = {"ssl": True, **t.tls} if t.tls is not None else {}
        return waiting_client(redislib.Redis(host=addr[0], port=addr[1], **auth, **tls, **self.options),
                              self.connections)

    def _node(self, addr: tuple) -> Node:
        node = self._by_addr.get(addr)
        if node is None:
            node = self._by_addr[addr] = Node(self._client(addr))
        return node

    def _refresh(self) -> None:
        """Read the slot map from the first node that answers (known masters, then seeds)."""
        with self._lock:
            if not self._stale:
                return
            candidates = list(dict.fromkeys([*self._by_addr, *self.target.nodes]))
            last = None
            for addr in candidates:
                try:
                    ranges = self._node(addr).client.execute_command("CLUSTER SLOTS")
                except redislib.exceptions.RedisError as exc:
                    last = exc
                    continue
                slots: list[tuple | None] = [None] * SLOTS
                for start, end, master, *_ in ranges:
                    host = master[0] if isinstance(master[0], str) else master[0].decode()
                    owner = (host or addr[0], int(master[1]))
                    for slot in range(int(start), int(end) + 1):
                        slots[slot] = owner
                self._slots, self._stale = slots, False
                return
            raise redislib.exceptions.ConnectionError(f"no node of the cluster answered CLUSTER SLOTS: {last}")

    def _for_key(self, key: str) -> Node:
        if self._stale:
            self._refresh()
        owner = self._slots[key_slot(key.encode("utf-8", "surrogateescape"))]
        if owner is None:
            self._stale = True
            raise redislib.exceptions.ClusterDownError(f"no master serves the slot of {key!r}")
        return self._node(owner)

    def for_queue(self, queue: str) -> Node:
        return self._for_key(f"mpq:{{{queue}}}:")

    def for_service(self) -> Node:
        return self._for_key(self.service_prefix)

    def all(self) -> list[Node]:
        if self._stale:
            self._refresh()
        return [self._node(addr) for addr in dict.fromkeys(a for a in self._slots if a)]

    def after_error(self, exc: Exception) -> float | None:
        kind = redirect_kind(exc)
        if kind in ("MOVED", "CLUSTERDOWN"):
            self._stale = True
            return 0.0 if kind == "MOVED" else 0.2
        if kind in ("ASK", "TRYAGAIN"):
            return 0.05                   # the slot is migrating: wait for it to settle
        if isinstance(exc, (redislib.exceptions.ConnectionError, redislib.exceptions.TimeoutError)):
            self._stale = True            # a master may have died: the next call re-reads the map
        return None

    def suspect(self, queue: str | None) -> None:
        self._stale = True                # a failover may have moved the slot to another master

    def close(self) -> None:
        for node in self._by_addr.values():
            node.close()


def redirect_kind(exc: Exception) -> str | None:
    """MOVED, ASK, TRYAGAIN or CLUSTERDOWN for a Cluster's redirect or refusal, else None.
    redis-py maps some of these to their own classes (and strips the word from the
    message), others arrive as a plain ResponseError: look at both."""
    e = redislib.exceptions
    for cls, kind in ((getattr(e, "MovedError", None), "MOVED"), (getattr(e, "AskError", None), "ASK"),
                      (getattr(e, "TryAgainError", None), "TRYAGAIN"),
                      (getattr(e, "ClusterDownError", None), "CLUSTERDOWN")):
        if cls is not None and isinstance(exc, cls):
            return kind
    if isinstance(exc, e.ResponseError):
        words = str(exc).split()
        for kind in ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"):
            if kind in words[:1] or f"-{kind}" in words[:1]:
                return kind
        if isinstance(exc, e.ExecAbortError) and ("MOVED" in str(exc) or "ASK" in str(exc)):
            return "MOVED"
    return None


def open_nodes(target: RedisTarget, options: dict, connections: int = DEFAULT_CONNECTIONS) -> Nodes:
    """`connections`: the size of each server's pool (a borrower waits when all are lent)."""
    cls = {"single": Nodes, "sentinel": SentinelNodes, "cluster": ClusterNodes}[target.kind]
    return cls(target, options, connections)
