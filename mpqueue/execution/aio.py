"""The one asyncio event loop of a worker process, made on first need (a service
of plain tasks never starts one).

With `concurrency: 1` the loop runs in the worker's main thread, one job at a
time (`run`). With more, it runs on a thread of its own, so the main thread
stays free to fetch jobs and watch deadlines while up to `concurrency` jobs
run on it (`submit`); a plain task on a thread, or a hook, that hands back a
coroutine has it run there too (`run` from any thread). Start hooks run on the
same loop as the jobs, so what they make (a client session, a pool) is bound
to the loop that uses it.

The loop outlives what jobs do to it. asyncio lets SystemExit and
KeyboardInterrupt out of its loop, killing it mid-turn, and loop.stop() ends
it; either would land on whichever job runs next (a timeout for a loop gone
quiet, a crash for the job in the main thread). So: a task created by a job
carries that job (the task factory; the job's context is copied into the
tasks it makes), and its exit becomes an ordinary error of that task (TaskExit),
logged in one line naming the job; an exit from a plain callback, or a
loop.stop() that is not ours, is logged in one line and the loop runs on at
once. No job is charged for any of it, except one that awaits the task.
"""
from __future__ import annotations

import asyncio
import collections.abc
import inspect
import logging
import select
import selectors
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..core.context import current_job
from .texts import describe

log = logging.getLogger("mpqueue.worker")
TICK = 0.1          # the loop stamps `turned` this often while it turns
_EXITS = (SystemExit, KeyboardInterrupt)
_FD_SETSIZE = 1024  # select() takes fds below this


class TaskExit(Exception):
    """What a job's task raised instead of SystemExit or KeyboardInterrupt: an
    error of that task (and of a job awaiting it), never the worker's exit."""


class EventLoop:
    def __init__(self, threaded: bool):
        self.threaded = threaded
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.turned = time.monotonic()       # last time the loop ran a callback (threaded only)
        self.closing = False
        self._beside = None                  # the thread of off_loop(), made on first need

    def ensure(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = _Loop(_FineSelector())
            self.loop.set_task_factory(_task_factory)
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
        while True:
            try:
                self.loop.run_forever()
            except _EXITS as exc:
                _exit_ignored(exc)
                continue
            if self.closing:
                return
            self.loop.restarted()

    def _tick(self) -> None:
        # A loop that stops stamping is blocked by a job (time.sleep in an async def):
        # the worker's main thread watches this (worker/slots.py).
        self.turned = time.monotonic()
        self.loop.call_later(TICK, self._tick)

    def started(self) -> bool:
        return self.loop is not None

    def create_job_task(self, coro, job_id: str):
        """A task on the loop (call on its thread) running `coro` for job `job_id`,
        whose steps the loop records (stepping())."""
        return self.loop.create_task(_Stepped(coro, self.loop, job_id))

    def stepping(self) -> str | None:
        """The id of the job whose task the loop is running a step of right now (None:
        none, or a callback that is no job's). Safe to read from any thread: a plain
        attribute, written only by the loop's thread around each step."""
        return self.loop.stepping if self.loop is not None else None

    def off_loop(self, func):
        """func() on a thread beside the loop: a future of its result on the running loop
        (call on a loop: ours, or a fresh one of run()'s). For a broker call that a loop callback (not a job's step) would make:
        on the loop it would hold every job of the worker for as long as the broker takes,
        blamed on no job (stepping() is None). One thread: the calls are short."""
        if self._beside is None:
            self._beside = ThreadPoolExecutor(1, thread_name_prefix="mpqueue-beside-loop")
        return asyncio.get_running_loop().run_in_executor(self._beside, func)

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
            return self._run_here(loop, asyncio.ensure_future(_as_coroutine(awaitable), loop=loop))
        if self.on_loop_thread():
            raise RuntimeError("a coroutine can't be waited for synchronously on the event loop's own thread")
        return self.submit(_as_coroutine(awaitable)).result()

    def _run_here(self, loop, future):
        """Run the loop in this thread until `future` is done, whatever else on the
        loop raises SystemExit or stops it meanwhile (what future raises, it raises)."""
        while True:
            loop.stopped_by = None
            try:
                return loop.run_until_complete(future)
            except _EXITS as exc:
                if future.done():
                    raise
                _exit_ignored(exc)
            except RuntimeError:
                if future.done() or loop.stopped_by is None:     # not "stopped before the future completed"
                    raise
                loop.restarted()

    def call(self, func, *args):
        """func(*args), waited for if it returns an awaitable (hooks may be coroutines)."""
        result = func(*args)
        return self.run(result) if inspect.isawaitable(result) else result

    def close(self) -> None:
        if self.loop is not None and self.threaded:
            self.closing = True
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._beside is not None:
            self._beside.shutdown(wait=False)


class _Loop(asyncio.SelectorEventLoop):
    """The worker's loop: remembers who called stop() (asyncio's own calls say
    nobody), so a stop that is not ours is told in one line naming its job."""
    stopped_by = None          # [the JobContext or None] of the last stop()
    stepping = None            # the job id whose task runs a step now (_Stepped)

    def stop(self) -> None:
        self.stopped_by = [current_job()]
        super().stop()

    def restarted(self) -> None:
        job = self.stopped_by[0] if self.stopped_by is not None else None
        self.stopped_by = None
        if job is not None:
            log.error("job %s (%s) stopped the event loop (loop.stop()): it runs on; no job is charged", job.id,
                      job.task, extra={"queue": job.queue, "job_id": job.id, "task": job.task})
        else:
            log.error("something stopped the event loop (loop.stop()) outside any job: it runs on")


class _FineSelector(selectors.EpollSelector):
    """epoll_wait() counts whole milliseconds and EpollSelector rounds a timeout
    up, so every timer of the loop fired up to 1 ms late: 0.7 ms on average on a
    busy machine, 1.4% of an `await asyncio.sleep(0.05)`, where a thread's
    time.sleep() is 0.1 ms late. Wait on the epoll fd itself with select(),
    whose timeout is in microseconds, then collect its events without waiting.
    select() takes no fd from FD_SETSIZE (1024) up: such an fd waits as before."""

    def select(self, timeout=None):
        if timeout is not None and timeout > 0 and self._selector.fileno() < _FD_SETSIZE:
            select.select([self._selector.fileno()], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def _task_factory(loop, coro, **kwargs):
    """Every task of the loop: one created by a job (its context is the job's) runs
    its coroutine inside _guarded, which knows the job."""
    job = current_job()
    if job is not None and asyncio.iscoroutine(coro):
        coro = _Stepped(_guarded(coro, job), loop, job.id)
    return asyncio.Task(coro, loop=loop, **kwargs)


class _Stepped(collections.abc.Coroutine):
    """A job's coroutine as its task drives it: each step (send/throw) records the
    job's id on the loop for that step. A job that blocks the loop (time.sleep in an
    async def) is then named by reading one attribute from the watching thread: no
    frame or local variable of anyone's is looked at, and asyncio's own
    current_task() is not safe to call from another thread. Costs one attribute
    write each side of a step."""
    __slots__ = ("coro", "loop", "job_id")

    def __init__(self, coro, loop, job_id: str):
        self.coro, self.loop, self.job_id = coro, loop, job_id

    def send(self, value):
        before, self.loop.stepping = self.loop.stepping, self.job_id
        try:
            return self.coro.send(value)
        finally:
            self.loop.stepping = before

    def throw(self, *exc):
        before, self.loop.stepping = self.loop.stepping, self.job_id
        try:
            return self.coro.throw(*exc)
        finally:
            self.loop.stepping = before

    def close(self):
        return self.coro.close()

    def __await__(self):
        return self.coro.__await__()


async def _guarded(coro, job):
    try:
        return await coro
    except _EXITS as exc:
        task = asyncio.current_task()
        name = task.get_name() if task is not None else "?"
        if task is not None:          # told in one line here: not again as "exception was never retrieved"
            task.add_done_callback(_retrieve)
        what = _describe(exc)
        log.error("task %r of job %s (%s) raised %s: it ends with that error; the event loop runs on, no other "
                  "job is charged", name, job.id, job.task, what,
                  extra={"queue": job.queue, "job_id": job.id, "task": job.task})
        raise TaskExit(f"{what} (raised in task {name!r} of job {job.id}; the worker does not exit for it)") from exc


def _retrieve(task) -> None:
    if not task.cancelled():
        task.exception()


def _exit_ignored(exc: BaseException) -> None:
    log.error("a callback on the event loop raised %s (not in a task of a job: whose it was can't be told): "
              "ignored; the event loop runs on, no job is charged", _describe(exc))


def _describe(exc: BaseException) -> str:
    return describe(exc).removesuffix(": ")


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
