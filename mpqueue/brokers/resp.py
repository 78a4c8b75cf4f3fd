"""The Redis wire protocol (RESP) on the two hot paths, done by hand.

redis-py's generic packer costs about a microsecond per argument, and a
reserve carries dozens (23 queue keys, 5 per folded ack); its pub/sub parser
cost a quarter of a millisecond per message. So: the queue's keys are encoded
once, a script call is one bytes object sent on a pooled connection (the reply
still parsed by redis-py), and wake-up frames are parsed here.
"""
from __future__ import annotations

import contextlib
import inspect

import redis as redislib


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
    """EVALSHA of registered scripts with pre-encoded keys, on the client's own pool."""

    def __init__(self, client):
        self.client = client
        pool = client.connection_pool
        try:     # redis-py >= 5.3 takes no command name (and warns when given one); 4.x needs it
            inspect.signature(pool.get_connection).bind()
            self._connection = pool.get_connection
        except TypeError:
            self._connection = lambda: pool.get_connection("EVALSHA")

    @staticmethod
    def packed(script, keys: bytes, nkeys: int, args) -> bytes:
        """The EVALSHA command; `keys`: the RESP encoding of the script's nkeys keys (see bulk)."""
        count = str(nkeys).encode()
        return b"".join((b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$%d\r\n%s\r\n"
                         % (3 + nkeys + len(args), script.sha.encode(), len(count), count),
                         keys, *map(bulk, args)))

    def call(self, script, keys: bytes, nkeys: int, args, wait=None) -> object:
        """`keys`: the RESP encoding of the script's nkeys keys (see bulk). `wait`:
        (replicas, seconds): WAIT for that many replicas on the same connection,
        in the same write; the reply is then (script's reply, replicas reached)."""
        command = self.packed(script, keys, nkeys, args)
        if wait:
            command += b"*3\r\n$4\r\nWAIT\r\n" + bulk(wait[0]) + bulk(max(1, int(wait[1] * 1000)))
        try:
            replies = self._send(command, 2 if wait else 1)
        except redislib.exceptions.NoScriptError:      # a restarted or flushed Redis
            self.client.script_load(script.script)
            replies = self._send(command, 2 if wait else 1)
        return tuple(replies) if wait else replies[0]

    def _send(self, command: bytes, count: int = 1) -> list:
        pool = self.client.connection_pool
        conn, healthy = self._connection(), False
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
            pool.release(conn)


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
            self.conn.send_packed_command([command])
            self.inflight.append((command, script))
        except (redislib.exceptions.RedisError, OSError):
            self.close()

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
