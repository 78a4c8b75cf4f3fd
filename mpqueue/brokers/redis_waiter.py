"""A Redis consumer's wake-up subscription (base.Waiter): hints that work may be
waiting, and the jobs a push hands straight to an idle consumer. (Waits for a
job's end share a connection instead: redis_watches.py.)"""
from __future__ import annotations

import contextlib
import json
import socket
import time

import redis

from ..proc import readable
from . import resp
from .base import BrokerError, Waiter
from .redis_nodes import broker_errors


class RedisWaiter(Waiter):
    """Pub/sub on the queue's wake channel, and on the consumer's own channel for
    jobs handed over by a push (see hand_off in _keys.lua).

    Every idle consumer hears every hint (a broadcast also carries 'the next
    delayed job is now sooner' to all). The subscription is a connection of its
    own, made from the node's pool (so on Sentinel it reaches the current
    master), and its frames are parsed here: redis-py's parser cost a quarter of
    a millisecond per message on the push-to-start path, and reading only raw
    bytes means none can sit unseen in another parser's buffer. `sharded`:
    SSUBSCRIBE on the master that owns the queue's slot (a Cluster); that master
    tells us if the slot moves away (sunsubscribe), and the waiter then reports
    the broker unavailable, so its consumer subscribes again where the slot is."""

    def __init__(self, client, channel, consumer=None, sharded=False):
        self._hand = f"{channel}:{consumer}".encode() if consumer else None
        channels = [channel] + ([self._hand.decode()] if consumer else [])
        prefix = b"s" if sharded else b""
        self._message, self._subscribed = prefix + b"message", prefix + b"subscribe"
        self._lost, self._gone = prefix + b"unsubscribe", False
        self._conn = self._open_connection(client.connection_pool)
        try:
            with broker_errors():
                self._conn.connect()
                self._on_a_master(channel)
                self._conn.send_command("SSUBSCRIBE" if sharded else "SUBSCRIBE", *channels)
            self._sock = resp.socket_of(self._conn)
            self._buf = b""
            self._confirm(len(channels))
        except BaseException:
            self.close()
            raise
        # From here on only drain() reads it, and must never wait: a socket with a
        # timeout (redis-py's) waits for data before recv(), whatever the flags.
        self._sock.settimeout(0.0)

    def _open_connection(self, pool):
        """A connection of its own for the subscription (a worker keeps it for life)."""
        return pool.make_connection()

    def _on_a_master(self, channel: str) -> None:
        """Subscribe only on a master. A replica delivers what its master publishes,
        but the master's receiver count (which a hand-off trusts) does not count
        its subscribers: a waiter on a demoted master would run a job that the push
        also enqueued. During a failover the sentinels may still name the old master
        for a moment; Sentinel demotes it and closes its clients in one MULTI, so
        this check and the SUBSCRIBE after it, on one connection, can't straddle it.
        The check is a write that changes nothing (the channel's name is never a
        key), which a replica refuses with READONLY: unlike ROLE, it needs no admin
        rights beyond what the broker's user has on its own keys."""
        self._conn.send_command("PEXPIRE", channel, 1)
        try:
            self._conn.read_response()
        except redis.exceptions.ResponseError as exc:
            raise BrokerError(f"redis: the wake-up connection did not reach a master ({exc}); "
                              "subscribing again") from None

    def _confirm(self, expected: int) -> None:
        """Read the SUBSCRIBE confirmations, so that a readable socket means a message.
        Any other frame (a job handed over already) stays buffered for drain()."""
        seen, deadline = 0, time.monotonic() + 5
        while True:
            self._refused()
            pos, kept = 0, b""
            while True:
                frame, end = resp.read_array(self._buf, pos)
                if frame is None:
                    break
                if frame and frame[0] == self._subscribed:
                    seen += 1
                else:
                    kept += self._buf[pos:end]
                pos = end
            self._buf = kept + self._buf[pos:]
            if seen >= expected:
                return
            if time.monotonic() > deadline:
                raise BrokerError("redis: no confirmation of the wake-up subscription")
            if readable([self._sock], max(0.0, deadline - time.monotonic())):
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise BrokerError("redis: the wake-up connection was closed")
                self._buf += chunk

    def _refused(self) -> None:
        """An error reply instead of a confirmation (MOVED: the slot is elsewhere)."""
        if self._buf.startswith(b"-"):
            line = self._buf.split(b"\r\n", 1)[0][1:].decode(errors="replace")
            raise BrokerError(f"redis: wake-up subscription refused: {line}")

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
            if len(frame) == 3 and frame[0] == self._message and frame[1] == self._hand:
                token, _, envelope = frame[2].decode("utf-8", "surrogateescape").partition(" ")
                out.append((token, envelope))
            elif frame and frame[0] == self._lost:
                # The queue's slot left this master (a reshard, a failover): from now on
                # we would hear nothing here. What was handed to us so far is ours.
                self._gone = True
        self._buf = self._buf[pos:]
        if self._gone:
            if not out:
                raise BrokerError("redis: the queue's slot moved to another node; subscribing again")
            # Make the socket readable again at once, so the next drain() reports it.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.disconnect()


def outcome(state: str, record: str) -> dict:
    """A job's end as find() shapes it, from what watch.lua or a publish carries."""
    if state == "failed":
        envelope, _, error = record.partition("\n")
        return {"state": "failed", "envelope": envelope, "error": _loads(error)}
    # done and cancelled: the done record ("" when result_ttl is 0), whose own
    # "state" says cancelled for a cancelled job
    return {"state": state, **_loads(record)}


def _loads(text: str) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
