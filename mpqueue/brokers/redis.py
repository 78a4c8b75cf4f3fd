"""The Redis broker: thin Python over one Lua script per state change (lua/*.lua).

Each script is given only the keys its header names, with only the helpers of
`_keys.lua` (the data model) it calls (redis_scripts.py), loaded once and called
by SHA. Every key of a queue is under the hash tag `mpq:{<queue>}:` and passed
in KEYS, so the same scripts can run on Redis Cluster. Script calls and wake-up
frames go over the wire through resp.py, which skips redis-py's per-argument
packing on these hot paths.
Where the calls go (one server, Sentinel's master, a Cluster's slot owner) is
redis_nodes.py's business; on a Cluster, wake-ups and hand-offs use sharded
pub/sub, whose receiver count is exact on the queue's own shard. The batch reads
of dashboards and metrics are in redis_inspection.py, node heartbeats in
redis_node_records.py, the throughput history in redis_history.py.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time

import redis as redislib

from ..core import redis_url
from . import data_format, resp
from .base import Broker, BrokerError, Held, NotReplicated, Reserved, Tick
from .redis_history import RedisHistory
from .redis_inspection import RedisInspection
from .redis_node_records import RedisNodeRecords
from .redis_nodes import REDIRECT_PATIENCE, broker_errors, open_nodes
from .redis_pools import DEFAULT_CONNECTIONS
from .redis_handles import RedisHandles
from .redis_scripts import KEY_NAMES, caller_done_keys, key_count, push_args, script_keys, script_source
from .redis_waiter import RedisWaiter

_SCRIPTS = ("push", "reserve", "retry", "release", "fail", "extend", "confirm", "expired", "renew", "requeue",
            "clean", "ready_count", "index_failed", "tick", "watch", "cancel", "run_now", "pause", "resume", "find")
# An idle worker only reads its wake-up connection, so it would learn that the
# connection died without a word (a Redis host that rebooted, a failover behind a
# VIP) only from TCP keepalive, after hours by default. Probing after 5 s idle,
# every 2 s, 3 times, finds it within ~11 s; probes are TCP, not Redis commands.
KEEPALIVE = {opt: value for opt, value in ((getattr(socket, "TCP_KEEPIDLE", None), 5),
                                           (getattr(socket, "TCP_KEEPINTVL", None), 2),
                                           (getattr(socket, "TCP_KEEPCNT", None), 3)) if opt is not None}


class QueueKeys:
    """A queue's Redis keys by name, as documented at the top of _keys.lua."""

    def __init__(self, queue: str):
        self.prefix = f"mpq:{{{queue}}}:"
        self.ready = [f"{self.prefix}ready:{p}" for p in range(10)]     # one list per priority 0..9
        (self.pmax, self.sched, self.held, self.leases, self.stats, self.failed, self.errors,
         self.wake, self.idle, self.failed_at, self.watch, self.cancels, self.ids, self.paused,
         self.where, self.dead, self.ticks, self.history, self.rate) = (self.prefix + name for name in KEY_NAMES[1:])  # its order
        self._packed: dict[str, bytes] = {}

    def done(self, job_id: str) -> str:
        return f"{self.prefix}done:{job_id}"

    def of(self, script: str) -> list[str]:
        """The keys script `script` declares (its KEYS header), in its order."""
        out = []
        for name in script_keys(script):
            out += self.ready if name == "ready:*" else [self.prefix + name]
        return out

    def packed(self, script: str) -> bytes:
        """of(script), RESP-encoded once per queue and script."""
        packed = self._packed.get(script)
        if packed is None:
            packed = self._packed[script] = b"".join(map(resp.bulk, self.of(script)))
        return packed


class ServiceKeys:
    """The service-wide records: the data format, the queue list and node heartbeats
    (under a hash tag of their own on a Cluster, so one node holds them all)."""

    def __init__(self, prefix: str):
        self.format = prefix + "format"              # data_format.py
        self.queues = prefix + "queues"
        self.nodes = prefix + "nodes"
        self.node_prefix = prefix + "node:"

    def node(self, node_id: str) -> str:
        return self.node_prefix + node_id


def _load_scripts(client, sharded: bool) -> dict:
    return {name: client.register_script(script_source(name, sharded)) for name in _SCRIPTS}


def client_options(url: str, socket_timeout: float) -> dict:
    """redis-py client options, the same for the sync and the asyncio client."""
    # surrogateescape: bytes that are not UTF-8 (junk a foreign writer put in our
    # keys) decode without an error and encode back to the same bytes, so they
    # reach the failed store as bad_payload instead of killing whoever read them.
    options = dict(decode_responses=True, encoding_errors="surrogateescape", socket_timeout=socket_timeout,
                   health_check_interval=30)
    if not url.startswith("unix:"):
        # TCP only: redis-py's Unix socket connection refuses these options
        options.update(socket_connect_timeout=5, socket_keepalive=True, socket_keepalive_options=KEEPALIVE)
    return options


class RedisBroker(RedisHandles, RedisInspection, RedisHistory, RedisNodeRecords, Broker):
    def __init__(self, url: str, socket_timeout: float = 10.0, connections: int | None = None):
        """`connections`: how many connections each server's pool lends at once (a
        worker: its concurrency and a margin); a borrower beyond waits for one."""
        self.url = url
        try:
            self.target = redis_url.parse(url)
        except ValueError as exc:
            raise BrokerError(f"broker: expected {exc}") from None
        self.options = client_options(url, socket_timeout)      # the async producer's client uses them too
        try:
            with broker_errors():
                self.servers = open_nodes(self.target, self.options, connections or DEFAULT_CONNECTIONS)
        except ValueError as exc:        # redis-py refusing an option: one line, never a traceback
            raise BrokerError(f"broker: {exc}") from None
        self.service = ServiceKeys(self.servers.service_prefix)
        self._scripts = _load_scripts(self.servers.for_service().client, self.target.sharded)
        self._keys: dict[str, QueueKeys] = {}
        self.data_format = None           # checked by the first call that reaches the broker

    @property
    def client(self):
        """The client of the node holding the service-wide records (one server: the only one)."""
        return self.servers.for_service().client

    def keys(self, queue: str) -> QueueKeys:
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys(queue)
        return keys

    def _on(self, queue, fn):
        """fn(node) on the node serving `queue` (None: the service-wide records), again
        after a redirect or during a slot migration for up to REDIRECT_PATIENCE;
        any other failure is a BrokerError at once. A process's first call checks the
        data format before it (check_format: a GET, once)."""
        if self.data_format is None:
            self.check_format()
        return self._routed(queue, fn)

    def check_format(self):
        if self.data_format is None:
            self.data_format = data_format.accept(self._routed(None, self._format_record))
        return self.data_format

    def _format_record(self, node):
        """The format record; made where there is none (SET NX: processes race), except
        on a replica, which can't write (a master records it; the data there has none)."""
        key = self.service.format
        recorded = node.client.get(key)
        if recorded is None:
            with contextlib.suppress(redislib.exceptions.ReadOnlyError), node.client.pipeline() as pipe:
                recorded = pipe.set(key, data_format.CURRENT, nx=True).get(key).execute()[1]
        return recorded

    def _routed(self, queue, fn):
        deadline = None
        while True:
            node = self.servers.for_queue(queue) if queue is not None else self.servers.for_service()
            try:
                return fn(node)
            except redislib.exceptions.RedisError as exc:
                pause = self.servers.after_error(exc)
                now = time.monotonic()
                deadline = deadline or now + REDIRECT_PATIENCE
                if pause is None or now + pause > deadline:
                    raise BrokerError(f"redis: {exc.__class__.__name__}: {exc}") from exc
                time.sleep(pause)     # ok: a bounded wait for a migrating slot, not a test

    def _call(self, script: str, queue: str, args, extra_keys=(), wait=None):
        """Run `script` on the queue's keys it declares, then `extra_keys` (its KEYS[NKEYS + i])."""
        packed = self.keys(queue).packed(script)
        if extra_keys:
            packed += b"".join(map(resp.bulk, extra_keys))
        nkeys = key_count(script) + len(extra_keys)
        return self._on(queue, lambda node: node.caller.call(self._scripts[script], packed, nkeys, args, wait))

    def _write(self, script: str, queue: str, args, extra_keys=()):
        """_call of a state change that must be durable when the URL asks for it (wait_replicas):
        then WAIT follows in the same round trip. Returns (reply, shortfall): shortfall is ""
        when it is durable, else how far it got, for the caller's error."""
        t = self.target
        if not t.wait_replicas:
            return self._call(script, queue, args, extra_keys), ""
        out, replicas = self._call(script, queue, args, extra_keys, wait=(t.wait_replicas, t.wait_timeout))
        if replicas >= t.wait_replicas:
            return out, ""
        return out, f"reached {replicas} of {t.wait_replicas} replicas within {t.wait_timeout:g} s"

    # -- producers
    def push(self, queue, items):
        dups, short = self._write("push", queue, push_args(items), caller_done_keys(self.keys(queue), items))
        if short:
            self._not_replicated(queue)
            raise NotReplicated(f"redis: the push {short}: the master has the jobs, but a failover now could "
                                "lose them; pushing them again may run them twice")
        return dups

    def tick(self, queue, name, tick_ms, envelope, priority, grace_ms):
        args = [name, int(tick_ms), int(grace_ms), priority, envelope, os.urandom(6).hex() + ".t"]
        out, short = self._write("tick", queue, args)
        if short:
            # Claimed and pushed on the master: a failover now loses both, and then
            # another node claims the tick again on the new one. Nothing to retry here.
            self._not_replicated(queue)
        return Tick(out[0], int(out[1]), int(out[2]))

    def _not_replicated(self, queue) -> None:
        # The likeliest cause is a failover in progress: the replicas now follow another
        # master while this one still takes writes (Sentinel demotes it only seconds
        # later). Drop its connections so the next call asks where the master is.
        self.servers.suspect(queue)

    # -- consumers
    def _reserve_raw(self, queue, consumer, count, lease, acks, idle="", rate=None):
        # idle flags of reserve.lua: "L" leave the idle list, "E" join it if empty-handed
        interval, burst = (repr(rate.interval_ms), rate.burst) if rate else (0, 0)
        args = [consumer, os.urandom(6).hex() + ".", count, int(lease * 1000), idle, interval, burst, len(acks)]
        keys = self.keys(queue)
        for a in acks:
            args += [a.id, a.token, a.record, a.ttl, "1" if a.first_attempt else "0"]
        # Durable (wait_replicas): a job starts only once the replicas know it is
        # reserved, and an ack counts only once they have it. Otherwise a failover
        # would hand the new master a queue where those jobs still wait (or are
        # still held), and they would run again: for every job the old master
        # handed out until Sentinel demoted it, seconds later.
        out, short = self._write("reserve", queue, args, [keys.done(a.id) for a in acks])
        if short and (acks or len(out) > 2):
            self._not_replicated(queue)
            raise NotReplicated(f"redis: a reserve {short}: its jobs are not run and its acks are sent again")
        return out

    def reserve(self, queue, consumer, count, lease, acks=(), *, leave_idle=False, join_idle=False, rate=None):
        idle = ("L" if leave_idle else "") + ("E" if join_idle else "")
        out = self._reserve_raw(queue, consumer, count, lease, acks, idle, rate)
        next_due = None if out[1] < 0 else out[1] / 1000.0
        return [Reserved(out[i], out[i + 1]) for i in range(2, len(out), 2)], next_due

    def ack(self, queue, acks):
        # reserve.lua with count 0 is a pure ack: one script, one code path.
        return self._reserve_raw(queue, "-", 0, 0, acks)[0] if acks else 0

    def _settle(self, script, queue, job_id, token, *args):
        reply = self._call(script, queue, [job_id, token, *args], [self.keys(queue).done(job_id)])
        if isinstance(reply, (bytes, str)):       # ended as cancelled: what the request asked
            return reply.decode() if isinstance(reply, bytes) else reply
        return reply == 1

    def retry(self, queue, job_id, token, delay, error):
        return self._settle("retry", queue, job_id, token, int(round(delay * 1000)), error)

    def release(self, queue, job_id, token):
        return self._settle("release", queue, job_id, token)

    def fail(self, queue, job_id, token, error, hook=None):
        return self._settle("fail", queue, job_id, token, error, hook or "")

    def extend(self, queue, job_id, token, lease):
        return self._call("extend", queue, [job_id, token, int(lease * 1000)]) == 1

    def extend_soon(self, queue, job_id, token, lease):
        # Sent like confirm (after it, on the same connection, so a hand-off's receipt
        # can't undo it): a job's start waits for no reply.
        self._send_receipt("extend", queue, [job_id, token, int(lease * 1000)])

    def confirm(self, queue, job_id, token, lease):
        # Sent without waiting for the reply: a hand-off must stay one round trip.
        self._send_receipt("confirm", queue, [job_id, token, int(lease * 1000)])

    def receipts_held(self, queue):
        try:
            return self.servers.for_queue(queue).receipts.held()
        except redislib.exceptions.RedisError:
            return contextlib.nullcontext()

    def _send_receipt(self, script, queue, args) -> None:
        """Send a script call nobody waits for, on the node's receipts connection (resp.Sender).
        A lost one only leaves what the reservation gave: a hand-off unconfirmed (its short
        lease ends and recovery refunds it), or a lease not lengthened (renewals go on)."""
        command = resp.ScriptCaller.packed(self._scripts[script], self.keys(queue).packed(script),
                                           key_count(script), args)
        try:
            node = self.servers.for_queue(queue)
        except redislib.exceptions.RedisError:
            return
        node.receipts.send(command, self._scripts[script])

    def renew(self, queue, consumers, lease):
        return self._call("renew", queue, [int(lease * 1000), *consumers]) if consumers else 0

    def held(self, queue):
        records = self._on(queue, lambda node: node.client.hgetall(self.keys(queue).held))
        return [_held(job_id, rec) for job_id, rec in records.items()]

    def expired(self, queue, limit=100):
        out = self._call("expired", queue, [limit])
        return [_held(out[i], out[i + 1]) for i in range(0, len(out), 2)]

    def waiter(self, queue, consumer=None):
        def subscribe(node):
            try:
                return RedisWaiter(node.client, self.keys(queue).wake, consumer, self.target.sharded)
            except BrokerError as exc:
                # refused (MOVED) or cut: the next attempt re-reads the slot map
                self.servers.after_error(redislib.exceptions.ConnectionError(str(exc)))
                raise
        return self._on(queue, subscribe)

    # -- inspection and administration
    def counts(self, queue):
        return self.counts_many([queue])[queue]      # redis_inspection.py: one MULTI/EXEC

    def ready_count(self, queue):
        return self._call("ready_count", queue, [])

    def requeue_failed(self, queue, ids):
        if ids is None:
            ids = list(self._on(queue, lambda node: node.client.hkeys(self.keys(queue).failed)))
        moved = 0
        for i in range(0, len(ids), 500):
            moved += self._call("requeue", queue, ids[i:i + 500])
        return moved

    def clean(self, queue):
        return self._call("clean", queue, [])

    def pause(self, queue):
        return self._call("pause", queue, []) == 1

    def resume(self, queue):
        return self._call("resume", queue, []) == 1       # and wakes the idle consumers

    def purge_failed(self, queue):
        k = self.keys(queue)

        def purge(node):
            with node.client.pipeline(transaction=True) as pipe:
                return pipe.hlen(k.failed).delete(k.failed, k.failed_at).execute()[0]
        return self._on(queue, purge)

    def ticks(self, queue):
        records = self._on(queue, lambda node: node.client.hgetall(self.keys(queue).ticks))
        out = {}
        for name, rec in records.items():
            last, _, fired = rec.partition(" ")
            if last.isdigit():
                out[name] = (int(last), int(fired) if fired.isdigit() else 0)
        return out

    def add_queues(self, names):
        if names:
            self._on(None, lambda node: node.client.sadd(self.service.queues, *names))

    def queues(self):
        return sorted(self._on(None, lambda node: node.client.smembers(self.service.queues)))

    def ping(self):
        self._on(None, lambda node: node.client.ping())

    def async_pusher(self):
        """redis.asyncio for one server; Sentinel and Cluster (whose routing and failover
        live in this broker) and pushes that WAIT for replicas use its calls on a thread."""
        if self.target.kind == "single" and not self.target.wait_replicas:
            from .redis_async import AsyncRedisPusher
            return AsyncRedisPusher(self)
        return super().async_pusher()

    def close(self):
        self.close_watches()
        self.servers.close()


def _held(job_id: str, record: str) -> Held:
    token, consumer, envelope = record.split(" ", 2)
    unconfirmed = consumer.endswith("+")        # a hand-off its consumer has not confirmed taking
    return Held(job_id, token, consumer.rstrip("+"), envelope, unconfirmed)
