"""Pushing to Redis from async code (Client.apush): redis.asyncio running the
sync broker's own push.lua (same source, same KEYS in the same order), so a
FastAPI or aiohttp handler enqueues without blocking its loop.

A redis.asyncio connection belongs to the event loop that opened it, and a
Client may outlive a loop (two asyncio.run() calls, one loop per test). So each
running loop gets a client of its own, made on its first push and closed on
that loop: by aclose(), or, if the loop ends first, while asyncio.run() shuts
it down (see _LoopClient._until_loop_ends).

After a fork the child has copies of the parent's loops and connections, which
share the parent's sockets and epoll instance: running a copied loop to close
them (close()) unregisters the parent's sockets, whose next push then hangs.
So, like the SQLite Database's pid guard, a pusher used in a forked child
forgets what its parent opened without touching it and starts afresh.
"""
from __future__ import annotations

import asyncio
import contextlib
import os

import redis.asyncio as aioredis

from . import data_format
from .redis_scripts import caller_done_keys, push_args, script_source
from .redis_nodes import broker_errors

# A burst of concurrent pushes on one loop shares this many connections (waiting
# for a free one) instead of opening one each.
MAX_CONNECTIONS = 32


class AsyncRedisPusher:
    """push() and add_queues() of a RedisBroker, awaitable. Errors are BrokerError."""

    def __init__(self, broker):
        self.broker = broker                              # whose data_format this checks once, as it would
        self.url = broker.target.url                      # one server: the URL redis-py takes
        self._queue_set = broker.service.queues
        self._keys = broker.keys                          # the broker's QueueKeys cache
        self._options = broker.options                    # the sync client's, timeouts included
        self._lua = script_source("push")
        self._by_loop: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._pid = os.getpid()
        self._inherited: list[dict] = []                 # a forked child's copies of its parent's clients

    def _clients(self) -> dict:
        """Each loop's client, of this process: in a forked child, none of its parent's."""
        if os.getpid() != self._pid:
            # Kept, never run or closed: dropping them would let their loop's async
            # generator hook wake the parent's loop (its self-pipe is shared too).
            self._inherited.append(self._by_loop)
            self._pid, self._by_loop = os.getpid(), {}
        return self._by_loop

    async def push(self, queue, items) -> list[int]:
        client = await self._client()
        keys = self._keys(queue)
        with broker_errors():
            return await _shielded(client.push(keys.of("push") + caller_done_keys(keys, items), push_args(items)))

    async def add_queues(self, names) -> None:
        if names:
            client = await self._client()
            with broker_errors():
                await _shielded(client.redis.sadd(self._queue_set, *names))

    async def _client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        client = self._clients().get(loop)
        if client is None:
            client = self._by_loop[loop] = _LoopClient(loop, self.url, self._options, self._lua, self.forget)
            await client.watch_loop()
        if self.broker.data_format is None:
            await self._check_format(client)
        return client

    async def _check_format(self, client: _LoopClient) -> None:
        """The sync broker's check_format(), on this loop's connection (once per process)."""
        key = self.broker.service.format
        with broker_errors():
            recorded = await _shielded(client.redis.get(key))
            if recorded is None:
                async with client.redis.pipeline(transaction=True) as pipe:
                    recorded = (await _shielded(pipe.set(key, data_format.CURRENT, nx=True).get(key).execute()))[1]
        self.broker.data_format = data_format.accept(recorded)

    def forget(self, client: _LoopClient) -> None:
        if self._clients().get(client.loop) is client:
            del self._by_loop[client.loop]

    async def aclose(self) -> None:
        """Close this loop's connections (and schedule closing those of other loops)."""
        client = self._clients().get(asyncio.get_running_loop())
        if client is not None:
            await client.close()
        self.close()

    def close(self) -> None:
        """Close every loop's connections that can be closed from here: a loop that
        is running (in this thread or another) closes its own soon after; one that
        is stopped is run until they are closed."""
        for loop, client in list(self._clients().items()):
            if loop.is_closed():
                self.forget(client)          # only a loop closed without asyncio.run(): nothing to run on
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(client.close(), loop)
            else:
                with contextlib.suppress(RuntimeError):     # another loop runs in this thread
                    loop.run_until_complete(client.close())


class _LoopClient:
    """One event loop's redis.asyncio client and its push script."""

    def __init__(self, loop, url: str, options: dict, lua: str, on_close):
        self.loop, self._on_close = loop, on_close
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS,
                                                        timeout=options["socket_timeout"], **options)
        self.redis = aioredis.Redis(connection_pool=pool)
        self.push = self.redis.register_script(lua)      # EVALSHA, loading the script when missing
        self._watch = self._until_loop_ends()
        self._closing = False

    async def watch_loop(self) -> None:
        await self._watch.__anext__()

    async def _until_loop_ends(self):
        # asyncio.run() (and asyncio.Runner, uvicorn, ...) closes every async generator
        # still open on its loop before closing the loop (loop.shutdown_asyncgens):
        # this generator's `finally` is how our connections get closed on their own
        # loop when nobody called aclose(). aclose() runs the same `finally`.
        try:
            yield
        finally:
            self._on_close(self)
            with contextlib.suppress(Exception):
                await _close(self.redis)

    async def close(self) -> None:
        if not self._closing:
            self._closing = True
            await self._watch.aclose()


async def _shielded(command):
    """Await a command that the caller's cancellation (a request timeout) can't cut
    short: a connection must not go back to the pool with a reply still on its way
    (redis-py before 4.5.3 then gave that reply to the next command). The job may
    still be pushed after its caller was cancelled, as it may be without this."""
    task = asyncio.ensure_future(command)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_retrieve)        # nobody awaits it now: no "never retrieved" log
        raise


def _retrieve(task) -> None:
    if not task.cancelled():
        task.exception()


async def _close(client) -> None:
    # redis-py 5.0.1 renamed close() to aclose() (4.3.4, Debian 12's, has only close()).
    await (client.aclose() if hasattr(client, "aclose") else client.close())
    await client.connection_pool.disconnect()
