"""The Redis wire protocol (RESP) on the two hot paths, done by hand.

redis-py's generic packer costs about a microsecond per argument, and a
reserve carries dozens (23 queue keys, 5 per folded ack); its pub/sub parser
cost a quarter of a millisecond per message. So: the queue's keys are encoded
once, a script call is one bytes object sent on a connection kept aside between
calls (redis-py's pool checkout cost a push as much as the rest of its Python; see
ScriptCaller), the reply still parsed by redis-py, and wake-up frames are parsed here.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import select
import socket

import redis as redislib
import redis.sentinel  # noqa: F401 - redislib.sentinel below

TCP_CORK = getattr(socket, "TCP_CORK", 3)       # Linux's value, where the module lacks the name


def socket_of(conn) -> socket.socket | None:
    """The socket of a redis-py connection, None while it is not connected. The one
    place we read redis-py's private `Connection._sock` (the same name from 4.3.4,
    Debian 12's, to the newest): it has no public accessor, and the hot paths need the
    socket itself, to poll() a kept connection for liveness (ScriptCaller), to cork
    receipts (Sender) and to read pub/sub frames by hand (redis_waiter.py,
    redis_watches.py). A release that renames it fails here, saying so, rather than
    each caller quietly taking it for "not connected"."""
    try:
        return conn._sock
    except AttributeError:
        raise RuntimeError(f"redis-py {redislib.__version__}: {type(conn).__name__} has no _sock: this redis-py "
                           "is newer than mpqueue knows (brokers/resp.py, socket_of)") from None


def bulk(value) -> bytes:
    """One argument as a RESP bulk string (str with surrogateescape, as the client decodes)."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogateescape")
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, int):
        data = b"%d" % value
    else:
        data = repr(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class ScriptCaller:
    """EVALSHA of registered scripts with pre-encoded keys, on the client's own pool.

    One connection is kept aside between calls (the spare) instead of going back to
    the pool: redis-py's checkout and release (locks, bookkeeping, and a liveness
    probe by a non-blocking recv that raises when there is nothing to read) cost a
    one-at-a-time push as much as its own Python. The spare gets the same probe, as
    one poll(): a connection Redis closed, or with bytes nobody read, is made anew
    before anything is sent on it. The spare counts as lent by the pool, so a pool
    of one connection keeps none, and Sentinel's none (see __init__). A thread that
    finds the spare taken uses the pool."""

    def __init__(self, client):
        self.client = client
        pool = client.connection_pool
        try:     # redis-py >= 5.3 takes no command name (and warns when given one); 4.x needs it
            inspect.signature(pool.get_connection).bind()
            self._connection = pool.get_connection
        except TypeError:
            self._connection = lambda: pool.get_connection("EVALSHA")
        # Sentinel's pool drops, as they come back, connections to a master it no longer
        # names: a spare would escape that, so behind Sentinel every call uses the pool.
        self._keep = getattr(pool, "max_connections", 0) > 1 and \
            not isinstance(pool, redislib.sentinel.SentinelConnectionPool)
        self._spare = []            # [(connection, pid, (its socket, a poll() of it))]: at most one
        self._heads: dict = {}      # (sha, nkeys, nargs) -> the command's RESP head

    @staticmethod
    def packed(script, keys: bytes, nkeys: int, args) -> bytes:
        """The EVALSHA command; `keys`: the RESP encoding of the script's nkeys keys (see bulk)."""
        return b"".join((ScriptCaller.head(script, nkeys, len(args)), keys, *map(bulk, args)))

    @staticmethod
    def head(script, nkeys: int, nargs: int) -> bytes:
        """An EVALSHA's first bytes: its length, the script's SHA and the key count."""
        count = str(nkeys).encode()
        return (b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$%d\r\n%s\r\n"
                % (3 + nkeys + nargs, script.sha.encode(), len(count), count))

    def _packed(self, script, keys: bytes, nkeys: int, args) -> bytes:
        """packed(), its head made once per script and shape (the calls on a hot path repeat theirs)."""
        shape = (script.sha, nkeys, len(args))
        head = self._heads.get(shape)
        if head is None:
            head = self._heads[shape] = self.head(script, nkeys, len(args))
        return b"".join((head, keys, *map(bulk, args)))

    def call(self, script, keys: bytes, nkeys: int, args, wait=None) -> object:
        """`keys`: the RESP encoding of the script's nkeys keys (see bulk). `wait`:
        (replicas, seconds): WAIT for that many replicas on the same connection,
        in the same write; the reply is then (script's reply, replicas reached)."""
        command = self._packed(script, keys, nkeys, args)
        if wait:
            command += b"*3\r\n$4\r\nWAIT\r\n" + bulk(wait[0]) + bulk(max(1, int(wait[1] * 1000)))
        try:
            replies = self._send(command, 2 if wait else 1)
        except redislib.exceptions.NoScriptError:      # a restarted or flushed Redis
            self.client.script_load(script.script)
            replies = self._send(command, 2 if wait else 1)
        return tuple(replies) if wait else replies[0]

    def _send(self, command: bytes, count: int = 1) -> list:
        (conn, poller), healthy = self._take(), False
        try:
            conn.send_packed_command([command])
            replies, error = [], None
            for _ in range(count):          # every reply read, even after an error: the connection stays in step
                try:
                    replies.append(conn.read_response())
                except redislib.exceptions.ResponseError as exc:
                    error = error or exc
            healthy = True
            if error is not None:
                raise error
            return replies
        finally:
            if not healthy:                # cut off mid-reply: never reuse it
                conn.disconnect()
            self._give_back(conn, poller, healthy)

    def _take(self):
        """(connection, (its socket, a poll() of it) or None): the spare, checked as the
        pool checks a connection it lends, else one from the pool."""
        try:
            conn, pid, polled = self._spare.pop()       # list.pop: atomic, no lock to hold across a fork
        except IndexError:
            return self._connection(), None
        if pid != os.getpid():          # the parent's (after a fork): its socket is not ours to use
            return self._connection(), None
        try:
            if socket_of(conn) is not polled[0] or polled[1].poll(0):
                # made anew meanwhile (then the poll is of another socket), or Redis
                # closed it or left bytes unread: connect again, as the pool would
                conn.disconnect()
                conn.connect()
                polled = None
        except BaseException:
            self.client.connection_pool.release(conn)
            raise
        return conn, polled

    def _give_back(self, conn, polled, healthy: bool) -> None:
        sock = socket_of(conn)
        if healthy and self._keep and sock is not None:
            if polled is None or polled[0] is not sock:
                polled = (sock, select.poll())
                polled[1].register(sock.fileno(), select.POLLIN)
            self._spare.append((conn, os.getpid(), polled))
            if len(self._spare) == 1:
                return
            try:                        # another thread gave one back meanwhile: keep one
                conn = self._spare.pop(0)[0]
            except IndexError:
                return
        self.client.connection_pool.release(conn)


class Sender:
    """Commands nobody waits for (a hand-off's receipt, a lease lengthened at a job's
    start), on a connection of their own, so they reach Redis in the order sent: each
    is sent at once, and their replies (a few bytes each) are left in the socket and
    read only every UNREAD_MAX sends, off the path to the job's start; one refused
    because Redis lost its script (a restart) is sent again once it is loaded. A send
    that fails is lost, which only leaves what the reservation gave (an unconfirmed
    hand-off, the queue's lease); the connection is made again next time."""
    UNREAD_MAX = 64

    def __init__(self, client):
        self.client, self.conn, self.inflight, self.loaded = client, None, [], set()
        self.corking = self.corked = False     # inside held(); and the socket is corked

    def send(self, command: bytes, script) -> None:
        try:
            if self.conn is None:
                self.conn = self.client.connection_pool.make_connection()
                self.conn.connect()
            if script.sha not in self.loaded:      # once per connection and script: EVALSHA must find it
                self.client.script_load(script.script)
                self.loaded.add(script.sha)
            if len(self.inflight) >= self.UNREAD_MAX:
                self.drain()
            if self.corking and not self.corked:
                self.corked = self._cork(1)
            self.conn.send_packed_command([command])
            self.inflight.append((command, script))
        except (redislib.exceptions.RedisError, OSError):
            self.close()

    @contextlib.contextmanager
    def held(self):
        """Receipts sent inside go to the kernel at once (a death of ours still sends
        them: closing a socket sends what it holds) but reach Redis only at the end
        (TCP_CORK): for a receipt that must be committed before an event that does not
        wait for it, a hand-off's confirm before the job goes down a worker's pipe,
        without Redis's wake-up competing with the worker's for the CPU. A socket
        that takes no cork (a Unix socket) sends them at once, as before."""
        self.corking = True
        try:
            yield
        finally:
            self.corking = False
            if self.corked:
                self.corked = False
                self._cork(0)

    def _cork(self, on: int) -> bool:
        sock = socket_of(self.conn)
        if sock is None:                      # gone
            return False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_CORK, on)
            return True
        except OSError:                       # not TCP
            return False

    def drain(self) -> None:
        while self.inflight:
            command, script = self.inflight.pop(0)
            try:
                self.conn.read_response()
            except redislib.exceptions.NoScriptError:     # Redis restarted meanwhile
                self.client.script_load(script.script)
                self.conn.send_packed_command([command])
                self.inflight.append((command, script))

    def close(self) -> None:
        self.corked = False
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.disconnect()
        self.conn, self.inflight, self.loaded = None, [], set()


def read_array(buf: bytes, pos: int):
    """One array (RESP2 `*`, or a RESP3 push `>`) of bulk strings/integers from
    buf[pos:]: (items, end), or (None, pos) while it is incomplete."""
    if pos >= len(buf):
        return None, pos
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0 or buf[pos:pos + 1] not in (b"*", b">"):
        return None, pos
    count, cur, items = int(buf[pos + 1:line_end]), line_end + 2, []
    for _ in range(count):
        line_end = buf.find(b"\r\n", cur)
        if line_end < 0:
            return None, pos
        kind = buf[cur:cur + 1]
        if kind == b":":
            items.append(int(buf[cur + 1:line_end]))
            cur = line_end + 2
            continue
        size = int(buf[cur + 1:line_end])
        start = line_end + 2
        if len(buf) < start + size + 2:
            return None, pos
        items.append(buf[start:start + size])
        cur = start + size + 2
    return items, cur
