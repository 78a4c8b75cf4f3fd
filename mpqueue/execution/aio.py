"""The one asyncio event loop of a worker process, made on first need (a service
of plain tasks never starts one).

With `concurrency: 1` the loop runs in the worker's main thread, one job at a
time (`run`). With more, it runs on a thread of its own, so the main thread
stays free to fetch jobs and watch deadlines while up to `concurrency` jobs
run on it (`submit`); a plain task on a thread, or a hook, that hands back a
coroutine has it run there too (`run` from any thread). Start hooks run on the
same loop as the jobs, so what they make (a client session, a pool) is bound
to the loop that uses it.
"""
from __future__ import annotations

import asyncio
import inspect
import threading
import time

TICK = 0.1          # the loop stamps `turned` this often while it turns


class EventLoop:
    def __init__(self, threaded: bool):
        self.threaded = threaded
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.turned = time.monotonic()       # last time the loop ran a callback (threaded only)

    def ensure(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            if self.threaded:
                ready = threading.Event()
                self.thread = threading.Thread(target=self._run_forever, args=(ready,), name="mpqueue-loop",
                                               daemon=True)
                self.thread.start()
                ready.wait()
        return self.loop

    def _run_forever(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.call_soon(self._tick)
        self.loop.run_forever()

    def _tick(self) -> None:
        # A loop that stops stamping is blocked by a job (time.sleep in an async def):
        # the worker's main thread watches this (worker/slots.py).
        self.turned = time.monotonic()
        self.loop.call_later(TICK, self._tick)

    def started(self) -> bool:
        return self.loop is not None

    def on_loop_thread(self) -> bool:
        return self.thread is not None and threading.get_ident() == self.thread.ident

    def submit(self, coro):
        """Schedule `coro` on the threaded loop; returns a concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.ensure())

    def run(self, awaitable):
        """Run an awaitable to its end from a thread that is not the loop's own and
        return its result (or raise its exception)."""
        if not self.threaded:
            loop = self.ensure()
            if _running_loop() is not None:
                # Called from inside another running loop (a sync push with sync:// in
                # an async handler): this thread can't run ours; give it one of its own.
                return _in_fresh_thread(awaitable)
            return loop.run_until_complete(_as_coroutine(awaitable))
        if self.on_loop_thread():
            raise RuntimeError("a coroutine can't be waited for synchronously on the event loop's own thread")
        return self.submit(_as_coroutine(awaitable)).result()

    def call(self, func, *args):
        """func(*args), waited for if it returns an awaitable (hooks may be coroutines)."""
        result = func(*args)
        return self.run(result) if inspect.isawaitable(result) else result

    def close(self) -> None:
        if self.loop is not None and self.threaded:
            self.loop.call_soon_threadsafe(self.loop.stop)


async def _as_coroutine(awaitable):
    return await awaitable


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _in_fresh_thread(awaitable):
    box = {}

    def target():
        try:
            box["value"] = asyncio.run(_as_coroutine(awaitable))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc
    thread = threading.Thread(target=target, name="mpqueue-inline-loop")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
