"""The Redis broker: thin Python over one Lua script per state change (lua/*.lua).

Each script is `_keys.lua` (the data model, shared helpers) followed by the
script's own body, loaded once and called by SHA. Every key of a queue is under
the hash tag `mpq:{<queue>}:` and passed in KEYS, so the same scripts can run
on Redis Cluster. Script calls and wake-up frames go over the wire through
resp.py, which skips redis-py's per-argument packing on these hot paths.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import socket
import time
from importlib import resources

import redis as redislib

from . import resp
from .base import Broker, BrokerError, Held, Reserved, Waiter

_SCRIPTS = ("push", "reserve", "settle", "expired", "renew", "requeue", "clean", "ready_count")
# Every script gets these keys of its queue, in this order (KEYS[1..19] of _keys.lua).
_KEY_NAMES = tuple(f"ready:{p}" for p in range(10)) + (
    "pmax", "sched", "held", "leases", "stats", "failed", "errors", "wake", "idle")
NODE_SET = "mpq:nodes"
# An idle worker only reads its wake-up connection, so it would learn that the
# connection died without a word (a Redis host that rebooted, a failover behind a
# VIP) only from TCP keepalive, after hours by default. Probing after 5 s idle,
# every 2 s, 3 times, finds it within ~11 s; probes are TCP, not Redis commands.
KEEPALIVE = {opt: value for opt, value in ((getattr(socket, "TCP_KEEPIDLE", None), 5),
                                           (getattr(socket, "TCP_KEEPINTVL", None), 2),
                                           (getattr(socket, "TCP_KEEPCNT", None), 3)) if opt is not None}


class QueueKeys:
    """A queue's Redis keys by name, in step with the table at the top of _keys.lua."""

    def __init__(self, queue: str):
        self.prefix = f"mpq:{{{queue}}}:"
        self.all = [self.prefix + name for name in _KEY_NAMES]     # KEYS, in script order
        self.ready = self.all[:10]                                 # one list per priority 0..9
        (self.pmax, self.sched, self.held, self.leases, self.stats, self.failed, self.errors,
         self.wake, self.idle) = self.all[10:]
        self.packed = b"".join(map(resp.bulk, self.all))           # RESP-encoded once

    def done(self, job_id: str) -> str:
        return f"{self.prefix}done:{job_id}"

QUEUE_SET = "mpq:queues"


@contextlib.contextmanager
def _errors():
    try:
        yield
    except redislib.exceptions.RedisError as exc:
        raise BrokerError(f"redis: {exc.__class__.__name__}: {exc}") from exc


# Scripts on a worker's hot path that touch one key are sent that key alone, without
# the data model's prelude (Redis parses every key and the prelude on each call).
_STANDALONE = ("confirm",)


@functools.lru_cache(maxsize=None)
def script_source(name: str) -> str:
    """A script's Lua as sent to Redis: the _keys.lua prelude, then its body (standalone ones alone)."""
    lua = resources.files(__package__).joinpath("lua")
    body = lua.joinpath(f"{name}.lua").read_text()
    return body if name in _STANDALONE else lua.joinpath("_keys.lua").read_text() + "\n" + body


def _load_scripts(client) -> dict:
    return {name: client.register_script(script_source(name)) for name in _SCRIPTS + _STANDALONE}


def push_args(items) -> list:
    """push.lua's ARGV for (envelope, priority, delay seconds) items."""
    args = [os.urandom(6).hex() + ".", len(items)]
    for envelope, priority, delay in items:
        args += [int(round(delay * 1000)) if delay and delay > 0 else 0, priority, envelope]
    return args


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


class RedisWaiter(Waiter):
    """Pub/sub on the queue's wake channel, and on the consumer's own channel for
    jobs handed over by a push (see hand_off in _keys.lua).

    Every idle consumer hears every hint (a broadcast also carries 'the next
    delayed job is now sooner' to all). After SUBSCRIBE is sent, the socket is
    read and its frames parsed here: redis-py's parser cost a quarter of a
    millisecond per message on the push-to-start path, and reading only raw
    bytes means none can sit unseen in another parser's buffer."""

    def __init__(self, client, channel, consumer=None):
        self._pubsub = client.pubsub()
        self._hand = f"{channel}:{consumer}".encode() if consumer else None
        channels = [channel] + ([self._hand.decode()] if consumer else [])
        with _errors():
            self._pubsub.subscribe(*channels)
        self._sock = self._pubsub.connection._sock
        self._buf = b""
        self._confirm(len(channels))
        # From here on only drain() reads it, and must never wait: a socket with a
        # timeout (redis-py's) waits for data before recv(), whatever the flags.
        self._sock.settimeout(0.0)

    def _confirm(self, expected: int) -> None:
        """Read the SUBSCRIBE confirmations, so that a readable socket means a message.
        Any other frame (a job handed over already) stays buffered for drain()."""
        seen, deadline = 0, time.monotonic() + 5
        while True:
            pos, kept = 0, b""
            while True:
                frame, end = resp.read_array(self._buf, pos)
                if frame is None:
                    break
                if frame and frame[0] == b"subscribe":
                    seen += 1
                else:
                    kept += self._buf[pos:end]
                pos = end
            self._buf = kept + self._buf[pos:]
            if seen >= expected:
                return
            if time.monotonic() > deadline:
                raise BrokerError("redis: no confirmation of the wake-up subscription")
            if select.select([self._sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                self._buf += self._sock.recv(65536)

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> list:
        """Read what has arrived; returns the (token, envelope) pairs handed to us."""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise BrokerError("redis: the wake-up connection was closed")
                self._buf += chunk
                if len(chunk) < 65536:
                    break
        except BlockingIOError:
            pass
        except OSError as exc:
            raise BrokerError(f"redis: wake-up connection: {exc}") from exc
        return self._handed()

    def _handed(self) -> list:
        out, pos = [], 0
        while True:
            frame, end = resp.read_array(self._buf, pos)
            if frame is None:
                break
            pos = end
            if len(frame) == 3 and frame[0] == b"message" and frame[1] == self._hand:
                token, _, envelope = frame[2].decode().partition(" ")
                out.append((token, envelope))
        self._buf = self._buf[pos:]
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pubsub.close()


class RedisBroker(Broker):
    def __init__(self, url: str, socket_timeout: float = 10.0):
        self.url = url
        self.options = client_options(url, socket_timeout)      # the async producer's client uses them too
        self.client = redislib.Redis.from_url(url, **self.options)
        self._scripts = _load_scripts(self.client)
        self._caller = resp.ScriptCaller(self.client)
        self._receipts = resp.Sender(self.client)
        self._keys: dict[str, QueueKeys] = {}

    def keys(self, queue: str) -> QueueKeys:
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys(queue)
        return keys

    def _call(self, script: str, queue: str, args, extra_keys=()):
        packed = self.keys(queue).packed
        if extra_keys:
            packed += b"".join(map(resp.bulk, extra_keys))
        with _errors():
            return self._caller.call(self._scripts[script], packed, len(_KEY_NAMES) + len(extra_keys), args)

    # -- producers
    def push(self, queue, items):
        self._call("push", queue, push_args(items))

    # -- consumers
    def _reserve_raw(self, queue, consumer, count, lease, acks, idle=""):
        # idle flags of reserve.lua: "L" leave the idle list, "E" join it if empty-handed
        args = [consumer, os.urandom(6).hex() + ".", count, int(lease * 1000), idle, len(acks)]
        keys = self.keys(queue)
        for a in acks:
            args += [a.id, a.token, a.record, a.ttl, "1" if a.first_attempt else "0"]
        return self._call("reserve", queue, args, [keys.done(a.id) for a in acks])

    def reserve(self, queue, consumer, count, lease, acks=(), *, leave_idle=False, join_idle=False):
        idle = ("L" if leave_idle else "") + ("E" if join_idle else "")
        out = self._reserve_raw(queue, consumer, count, lease, acks, idle)
        next_due = None if out[1] < 0 else out[1] / 1000.0
        return [Reserved(out[i], out[i + 1]) for i in range(2, len(out), 2)], next_due

    def ack(self, queue, acks):
        # reserve.lua with count 0 is a pure ack: one script, one code path.
        return self._reserve_raw(queue, "-", 0, 0, acks)[0] if acks else 0

    def _settle(self, queue, job_id, token, action, ms=0, record="", hook=""):
        return self._call("settle", queue, [job_id, token, action, ms, record, hook or ""]) == 1

    def retry(self, queue, job_id, token, delay, error):
        return self._settle(queue, job_id, token, "retry", int(round(delay * 1000)), error)

    def release(self, queue, job_id, token):
        return self._settle(queue, job_id, token, "release")

    def fail(self, queue, job_id, token, error, hook=None):
        return self._settle(queue, job_id, token, "fail", 0, error, hook)

    def extend(self, queue, job_id, token, lease):
        return self._settle(queue, job_id, token, "extend", int(lease * 1000))

    def confirm(self, queue, job_id, token, lease):
        # Sent without waiting for the reply: a hand-off must stay one round trip.
        script, keys = self._scripts["confirm"], self.keys(queue)
        packed = resp.bulk(keys.held) + resp.bulk(keys.leases)
        self._receipts.send(self._caller.packed(script, packed, 2, [job_id, token, int(lease * 1000)]), script)

    def renew(self, queue, consumers, lease):
        return self._call("renew", queue, [int(lease * 1000), *consumers]) if consumers else 0

    def held(self, queue):
        with _errors():
            records = self.client.hgetall(self.keys(queue).held)
        return [_held(job_id, rec) for job_id, rec in records.items()]

    def expired(self, queue, limit=100):
        out = self._call("expired", queue, [limit])
        return [_held(out[i], out[i + 1]) for i in range(0, len(out), 2)]

    def waiter(self, queue, consumer=None):
        return RedisWaiter(self.client, self.keys(queue).wake, consumer)

    # -- inspection and administration
    def counts(self, queue):
        k = self.keys(queue)
        with _errors(), self.client.pipeline(transaction=True) as pipe:
            for key in k.ready:
                pipe.llen(key)
            pipe.zcard(k.sched).hlen(k.held).hlen(k.failed).hgetall(k.stats)
            res = pipe.execute()
        stats = res[13]
        return {"ready": sum(res[:10]), "scheduled": res[10], "running": res[11], "failed": res[12],
                "done_total": int(stats.get("done", 0)), "failed_total": int(stats.get("failed", 0))}

    def ready_count(self, queue):
        return self._call("ready_count", queue, [])

    def failed(self, queue, limit=100):
        with _errors():
            out = []
            for job_id, rec in self.client.hscan_iter(self.keys(queue).failed, count=200):
                envelope, _, error = rec.partition("\n")
                out.append((job_id, envelope, error))
                if len(out) >= limit:
                    break
        return out

    def requeue_failed(self, queue, ids):
        with _errors():
            if ids is None:
                ids = list(self.client.hkeys(self.keys(queue).failed))
        moved = 0
        for i in range(0, len(ids), 500):
            moved += self._call("requeue", queue, ids[i:i + 500])
        return moved

    def clean(self, queue):
        return self._call("clean", queue, [])

    def purge_failed(self, queue):
        key = self.keys(queue).failed
        with _errors(), self.client.pipeline(transaction=True) as pipe:
            n, _ = pipe.hlen(key).delete(key).execute()
        return n

    def find(self, queue, job_id):
        with _errors():
            return self._find(self.keys(queue), job_id)

    def _find(self, k, job_id):
        c = self.client
        held = c.hget(k.held, job_id)
        if held:
            h = _held(job_id, held)
            return {"state": "running", "envelope": h.envelope, "consumer": h.consumer}
        done = c.get(k.done(job_id))
        if done:
            return {"state": "done", **json.loads(done)}
        failed = c.hget(k.failed, job_id)
        if failed:
            envelope, _, error = failed.partition("\n")
            return {"state": "failed", "envelope": envelope, "error": json.loads(error or "{}")}
        last_error = c.hget(k.errors, job_id)
        extra = {"last_error": json.loads(last_error)} if last_error else {}
        for envelope, due in c.zscan_iter(k.sched, match=f"{job_id} *"):
            return {"state": "scheduled", "envelope": envelope, "due_ms": int(due), **extra}
        for key in k.ready:
            for start in range(0, c.llen(key), 1000):
                for envelope in c.lrange(key, start, start + 999):
                    if envelope.startswith(job_id + " "):
                        return {"state": "ready", "envelope": envelope, **extra}
        return None

    def heartbeat(self, node_id, info, ttl):
        now = time.time()
        with _errors(), self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(NODE_SET, {node_id: now})
            pipe.set(f"mpq:node:{node_id}", json.dumps(info), ex=max(1, int(ttl)))
            pipe.zremrangebyscore(NODE_SET, "-inf", now - 24 * 3600)
            pipe.execute()

    def nodes(self):
        with _errors():
            ids = self.client.zrange(NODE_SET, 0, -1)
            if not ids:
                return []
            values = self.client.mget([f"mpq:node:{i}" for i in ids])
            dead = [i for i, v in zip(ids, values) if v is None]
            if dead:
                self.client.zrem(NODE_SET, *dead)
        return [json.loads(v) for v in values if v]

    def add_queues(self, names):
        if names:
            with _errors():
                self.client.sadd(QUEUE_SET, *names)

    def queues(self):
        with _errors():
            return sorted(self.client.smembers(QUEUE_SET))

    def ping(self):
        with _errors():
            self.client.ping()

    def close(self):
        self._receipts.close()
        with contextlib.suppress(Exception):
            self.client.close()


def _held(job_id: str, record: str) -> Held:
    token, consumer, envelope = record.split(" ", 2)
    unconfirmed = consumer.endswith("+")        # a hand-off its consumer has not confirmed taking
    return Held(job_id, token, consumer.rstrip("+"), envelope, unconfirmed)
