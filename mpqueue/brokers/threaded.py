"""Pushing from async code to a broker whose calls block (SQLite): the broker's
own push() and add_queues() on a thread of the loop's default executor, so the
event loop keeps turning while a transaction waits for the write lock or the
disk. Threads share the broker safely (the SQLite Database serializes them)."""
from __future__ import annotations

import asyncio


class ThreadedPusher:
    """push() and add_queues() of any Broker, awaitable; its errors unchanged."""

    def __init__(self, broker):
        self.broker = broker

    async def push(self, queue, items) -> list[int]:
        return await asyncio.to_thread(self.broker.push, queue, items)

    async def add_queues(self, names) -> None:
        if names:
            await asyncio.to_thread(self.broker.add_queues, names)

    async def aclose(self) -> None:
        pass        # it holds nothing of its own: the broker is its owner's to close

    def close(self) -> None:
        pass
