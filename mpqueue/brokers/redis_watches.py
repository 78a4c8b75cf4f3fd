"""Waiting for many jobs' ends over one connection per server (Client.result,
JobHandle.aresult on Redis).

Until 0.2 every result() wait subscribed on a connection of its own, borrowed
from the pool for the whole wait: 1,200 threads waiting meant 1,200
connections, and past the pool's limit the waits failed. Here a broker has one
Subscriber per server (per master on a Cluster, where it uses sharded
SSUBSCRIBE on the master owning the queue's slot), which subscribes to job
channels on demand, unsubscribes when the last waiter of a channel leaves, and
hands each end to the waiters of that job. A reader thread per Subscriber
parses the frames; a waiting thread sleeps on its watch's Event, an awaiting
coroutine on a callback that reaches its loop with call_soon_threadsafe.

The guarantees of a subscription of one's own still hold:
- subscribed first, then watched: subscribe() returns only once the server
  confirmed the subscription, and only then does refresh() run watch.lua;
- a connection that is dead but looks alive: the reader pings after LIVENESS
  seconds of silence and gives the connection up when no answer comes within
  LIVENESS more; the connection's own end (a failover closes it) is seen at once.
  Every waiter on it is woken, and its next refresh() subscribes again on a
  new connection (on Sentinel: to the current master) before re-checking, so
  an end published meanwhile is found by watch.lua or find();
- a Cluster slot that moves away (an unasked sunsubscribe) ends the wait with a
  BrokerError, as before.
- fork: a child never uses its parent's Subscribers (their reader thread lives
  in the parent only); it opens its own, leaving the parent's sockets alone.
"""
from __future__ import annotations

import collections
import contextlib
import os
import threading
import time

from ..proc import readable
from . import resp
from .base import BrokerError, JobWatch
from .redis_nodes import broker_errors
from .redis_waiter import outcome

LIVENESS = 5.0           # ping after this long without a frame; give up after as long again
CONFIRM_WAIT = 5.0       # a subscription the server has not confirmed by then: the connection is given up


def command(*words) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(map(resp.bulk, words))


class _Channel:
    def __init__(self):
        self.watches: set = set()
        self.confirmed = threading.Event()


class Subscriber:
    """One pub/sub connection to one server, shared by every watch of jobs there."""

    def __init__(self, pool, sharded: bool):
        prefix = b"s" if sharded else b""
        self._sub, self._unsub = prefix + b"subscribe", prefix + b"unsubscribe"
        self._message = prefix + b"message"
        self._lock = threading.Lock()
        self._channels: dict[bytes, _Channel] = {}
        self._unasked: collections.Counter = collections.Counter()   # unsubscribes we sent, unconfirmed
        self.dead: str | None = None
        # Made with the pool's settings (on Sentinel: to the master it names now) but
        # outside its count: it lives as long as the broker, and a pool whose every
        # connection is lent must not keep it from being made.
        self._conn = pool.connection_class(**pool.connection_kwargs)
        with broker_errors():
            self._conn.connect()
        self._sock = resp.socket_of(self._conn)
        self._thread = threading.Thread(target=self._read, name="mpqueue-result-watches", daemon=True)
        self._thread.start()

    def subscribe(self, watch) -> None:
        """Add `watch` to its channel, subscribing when it is the first; returns once
        the server confirmed the subscription. BrokerError if the connection fails."""
        with self._lock:
            if self.dead:
                raise BrokerError(f"redis: result watches: {self.dead}")
            entry = self._channels.get(watch.channel)
            if entry is None:
                entry = self._channels[watch.channel] = _Channel()
                self._send(command(self._sub.upper(), watch.channel))
            entry.watches.add(watch)
        if not entry.confirmed.wait(CONFIRM_WAIT):
            self._die("no confirmation of a subscription")
        if self.dead:
            raise BrokerError(f"redis: result watches: {self.dead}")

    def unsubscribe(self, watch) -> None:
        with self._lock:
            entry = self._channels.get(watch.channel)
            if entry is None or watch not in entry.watches:
                return
            entry.watches.discard(watch)
            if not entry.watches and not self.dead:
                del self._channels[watch.channel]
                self._unasked[watch.channel] += 1
                self._send(command(self._unsub.upper(), watch.channel))

    def _send(self, data: bytes) -> None:
        """Called with the lock held (writes from several threads must not interleave)."""
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self._die_locked(f"the connection failed: {exc}")

    def _read(self) -> None:
        buf, pinged = b"", None
        while not self.dead:
            try:
                ready = readable([self._sock], LIVENESS)
                chunk = self._sock.recv(65536) if ready else None
                # TLS: poll() does not see bytes already decrypted into the SSL buffer
                while chunk and getattr(self._sock, "pending", lambda: 0)():
                    chunk += self._sock.recv(65536)
            except (OSError, ValueError) as exc:
                return self._die(f"the connection failed: {exc}")
            if chunk is None:
                if pinged is not None and time.monotonic() - pinged >= LIVENESS:
                    return self._die("the connection went silent (no answer to a ping)")
                if pinged is None:
                    pinged = time.monotonic()
                    with self._lock:
                        self._send(command(b"PING"))
                continue
            if not chunk:
                return self._die("the server closed the connection")
            pinged = None
            buf = self._frames(buf + chunk)
            if buf.startswith(b"-"):
                line = buf.split(b"\r\n", 1)[0][1:].decode(errors="replace")
                return self._die(f"error reply: {line}")

    def _frames(self, buf: bytes) -> bytes:
        pos = 0
        while True:
            frame, end = resp.read_array(buf, pos)
            if frame is None:
                return buf[pos:]
            pos = end
            if len(frame) == 3 and frame[0] == self._message:
                self._deliver(frame[1], frame[2])
            elif len(frame) >= 2 and frame[0] == self._sub:
                with self._lock:
                    entry = self._channels.get(frame[1])
                if entry is not None:
                    entry.confirmed.set()
            elif len(frame) >= 2 and frame[0] == self._unsub:
                self._unsubscribed(frame[1])

    def _deliver(self, channel: bytes, data: bytes) -> None:
        state, _, record = data.decode("utf-8", "surrogateescape").partition(" ")
        with self._lock:
            entry = self._channels.get(channel)
            watches = list(entry.watches) if entry else ()
        for w in watches:
            w.heard(outcome(state, record))

    def _unsubscribed(self, channel: bytes) -> None:
        with self._lock:
            if self._unasked[channel] > 0:
                self._unasked[channel] -= 1
                if not self._unasked[channel]:
                    del self._unasked[channel]
                return
            # Not asked: the queue's slot left this master (a reshard, a failover).
            entry = self._channels.pop(channel, None)
        for w in entry.watches if entry else ():
            w.lost("the queue's slot moved to another node while waiting for a job", again=False)

    def _die(self, reason: str) -> None:
        with self._lock:
            self._die_locked(reason)

    def _die_locked(self, reason: str) -> None:
        if self.dead:
            return
        self.dead = reason
        entries, self._channels = list(self._channels.values()), {}
        with contextlib.suppress(Exception):
            self._conn.disconnect()
        for entry in entries:
            entry.confirmed.set()
            for w in entry.watches:
                w.lost(reason, again=True)

    def close(self) -> None:
        self._die("closed")


class Watches:
    """A broker's Subscribers, one per server (Node), made on the first wait there."""

    def __init__(self, sharded: bool):
        self.sharded = sharded
        self._lock = threading.Lock()
        self._subs: dict = {}
        self._pid = os.getpid()

    def attach(self, node, watch) -> None:
        """Subscribe `watch` on `node`'s Subscriber (a new one if there is none, or it
        died). A connection that dies while the subscription is on its way is
        replaced once; a new one failing too is the caller's BrokerError."""
        for attempt in (1, 2):
            sub = self._subscriber(node)
            watch.sub = sub
            try:
                return sub.subscribe(watch)
            except BrokerError:
                if attempt == 2 or not sub.dead or sub.dead == "closed":
                    raise

    def _subscriber(self, node) -> Subscriber:
        with self._lock:
            if os.getpid() != self._pid:
                self._pid, self._subs = os.getpid(), {}    # the parent's are the parent's
            sub = self._subs.get(node)
            if sub is None or sub.dead:
                sub = self._subs[node] = Subscriber(node.client.connection_pool, self.sharded)
            return sub

    def close(self) -> None:
        with self._lock:
            subs, self._subs = list(self._subs.values()), {}
            mine = os.getpid() == self._pid
        for sub in subs if mine else ():
            sub.close()


class SharedJobWatch(JobWatch):
    """base.JobWatch on Redis, through the broker's Watches: a job's channel
    ("<watch>:<id>"), on which the script that ends the job publishes "<state>
    <record>" while the job is in the queue's watch ZSET. `refresh` runs watch.lua
    (it (re)adds the job to that ZSET and returns its end if it has one already),
    after subscribing again if the connection was lost."""

    def __init__(self, channel: str, refresh, resubscribe):
        self.channel = channel.encode()
        self._refresh, self._resubscribe = refresh, resubscribe
        self.ended = None            # what the last refresh() found: an outcome, or None
        self.sub = None
        self._lock = threading.Lock()
        self._heard: list = []
        self._event = threading.Event()
        self._callbacks: list = []
        self._again = self._gone = None

    # -- the Subscriber's side (its reader thread)
    def heard(self, end: dict) -> None:
        with self._lock:
            self._heard.append(end)
        self._wake()

    def lost(self, reason: str, again: bool) -> None:
        if again:
            self._again = reason
        else:
            self._gone = reason
        self._wake()

    def _wake(self) -> None:
        self._event.set()
        for callback in list(self._callbacks):
            callback()

    # -- the waiter's side
    def fileno(self) -> int:
        raise OSError("a shared result watch has no descriptor of its own: use wait() or add_callback()")

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)

    def add_callback(self, fn) -> None:
        """fn() (from another thread) whenever wait() would return True: an end, or a loss."""
        self._callbacks.append(fn)

    def remove_callback(self, fn) -> None:
        with contextlib.suppress(ValueError):
            self._callbacks.remove(fn)

    def drain(self) -> list:
        self._event.clear()
        with self._lock:
            out, self._heard = self._heard, []
        if self._gone and not out:
            raise BrokerError(f"redis: {self._gone}")
        return out

    def refresh(self) -> None:
        if self._again:                  # the connection was lost: subscribe again first
            self._again = None
            self._resubscribe(self)
        out = self._refresh()
        self.ended = outcome(out[0], out[1]) if out else None

    def close(self) -> None:
        if self.sub is not None:
            self.sub.unsubscribe(self)
