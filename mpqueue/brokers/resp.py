"""The Redis wire protocol (RESP) on the two hot paths, done by hand.

redis-py's generic packer costs about a microsecond per argument, and a
reserve carries dozens (19 queue keys, 5 per folded ack); its pub/sub parser
cost a quarter of a millisecond per message. So: the queue's keys are encoded
once, a script call is one bytes object sent on a pooled connection (the reply
still parsed by redis-py), and wake-up frames are parsed here.
"""
from __future__ import annotations

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

    def call(self, script, keys: bytes, nkeys: int, args) -> object:
        """`keys`: the RESP encoding of the script's nkeys keys (see bulk)."""
        count = str(nkeys).encode()
        command = b"".join((b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$%d\r\n%s\r\n"
                            % (3 + nkeys + len(args), script.sha.encode(), len(count), count),
                            keys, *map(bulk, args)))
        try:
            return self._send(command)
        except redislib.exceptions.NoScriptError:      # a restarted or flushed Redis
            self.client.script_load(script.script)
            return self._send(command)

    def _send(self, command: bytes):
        pool = self.client.connection_pool
        conn, healthy = self._connection(), False
        try:
            conn.send_packed_command([command])
            reply = conn.read_response()
            healthy = True
            return reply
        except redislib.exceptions.ResponseError:
            healthy = True                 # an error reply: the connection is still in step
            raise
        finally:
            if not healthy:                # cut off mid-reply: never reuse it
                conn.disconnect()
            pool.release(conn)


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
