"""Awaitable job handles (Client.aresult, astatus, acancel; JobHandle's too):
the same questions, answers and errors as handles.py's, without blocking the
event loop and without a thread per waiter.

- The broker calls (find, watch, cancel, through handles.locate and
  handles.cancel) run on a small executor of the client's own, CALL_THREADS
  threads shared by every await: a thousand awaits queue for them instead of
  starving the loop's default executor (what `asyncio.to_thread(h.result)`
  does: with 20 waiters a 1 ms job's result took 8.8 s).
- The wait itself holds no thread: on Redis the watch is a SharedJobWatch, whose
  subscriber thread calls back into the loop (call_soon_threadsafe) when the job
  ends; on SQLite the loop watches the FIFO's descriptor (loop.add_reader).
- As result(): re-checked at most every RESULT_RECHECK seconds in case a hint
  was lost, and the timeout checked by handles.check_timeout.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

from ..brokers.base import RESULT_RECHECK
from . import handles
from .handles import ENDED, JobUnknown, ResultTimeout, check_timeout, locate, outcome, state_of

# Threads running one client's broker calls for its awaits (each call is one or a
# few round trips; an await waiting for an end holds none).
CALL_THREADS = 8


class Calls:
    """A client's executor for broker calls from async code, made on first use. A
    forked child makes its own (the parent's threads do not exist in it)."""

    def __init__(self):
        self._pool, self._pid = None, os.getpid()

    async def run(self, fn, *args):
        if self._pool is None or self._pid != os.getpid():
            self._pool = ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="mpqueue-handles")
            self._pid = os.getpid()
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.shutdown(wait=False)
        self._pool = None


async def status(client, job_id: str, queue: str | None) -> str:
    return state_of((await client._calls.run(locate, client, job_id, queue))[1])


async def cancel(client, job_id: str, kill: bool, queue: str | None) -> tuple[str | None, str]:
    return await client._calls.run(handles.cancel, client, job_id, kill, queue)


async def wait_result(client, job_id: str, timeout: float | None, queue: str | None):
    """Client.aresult: handles.wait_result, awaitable."""
    timeout = check_timeout(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    calls = client._calls
    queue, found = await calls.run(handles.located, client, job_id, queue)
    job_id = str.__str__(job_id)
    if found is None:
        raise JobUnknown(job_id, queue)
    if state_of(found) in ENDED:
        return outcome(job_id, found)
    watch = await _watch(calls, client.broker, queue, job_id)
    woken = asyncio.Event()
    disarm = _arm(asyncio.get_running_loop(), watch, woken.set)
    try:
        return await _wait(client, watch, woken, queue, job_id, deadline, timeout)
    finally:
        disarm()
        watch.close()


async def _watch(calls, broker, queue, job_id):
    """broker.watch() on the executor; closed there too if the await is cancelled
    meanwhile (a request timeout), so no subscription outlives its waiter."""
    task = asyncio.ensure_future(calls.run(broker.watch, queue, job_id))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_close_unclaimed)
        raise


def _close_unclaimed(task) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()


async def _wait(client, watch, woken, queue, job_id, deadline, timeout):
    next_check = 0.0        # watched now: re-check at once, so an end just before is seen
    state = "unknown"
    while True:
        now = time.monotonic()
        if now >= next_check:
            found = await client._calls.run(handles.recheck, client, watch, queue, job_id, bool(next_check))
            state = state_of(found)
            if state in ENDED:
                return outcome(job_id, found)
            if found is None and not watch.wait(0):
                raise JobUnknown(job_id, queue)      # dropped (mpqctl clean) or expired meanwhile
            next_check = time.monotonic() + RESULT_RECHECK
            now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise ResultTimeout(job_id, timeout, state)
        until = next_check if deadline is None else min(next_check, deadline)
        try:
            await asyncio.wait_for(woken.wait(), max(0.0, until - now))
        except asyncio.TimeoutError:
            continue
        woken.clear()
        heard = [o for o in watch.drain() if state_of(o) in ENDED]
        if heard:
            return outcome(job_id, heard[0])
        next_check = 0.001       # a bare hint (SQLite) or a lost connection (Redis): re-check now


def _arm(loop, watch, wake):
    """Call wake() on the loop whenever the watch has something to drain; returns
    the undo. A shared Redis watch calls back from its subscriber's thread; any
    other watch is a descriptor the loop itself watches."""
    if hasattr(watch, "add_callback"):
        def callback():
            with contextlib.suppress(RuntimeError):      # the loop closed meanwhile
                loop.call_soon_threadsafe(wake)
        watch.add_callback(callback)
        if watch.wait(0):                 # something arrived before the callback was in place
            wake()
        return lambda: watch.remove_callback(callback)
    fd = watch.fileno()
    loop.add_reader(fd, wake)
    return lambda: loop.remove_reader(fd)
