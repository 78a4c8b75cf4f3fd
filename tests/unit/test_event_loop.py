"""The worker's event loop (execution/aio.py) outlives what jobs do to it, in the
main thread (concurrency 1) and on its own thread; and how a settled job reads
(execution/settle.py). No processes, no broker."""
from __future__ import annotations

import asyncio
import logging
import select
import sys
import time

import pytest

from mpqueue.core.context import CancelProbe, JobContext, reset_current, set_current
from mpqueue.execution import aio as aio_mod
from mpqueue.execution.aio import EventLoop, TaskExit
from mpqueue.execution.settle import Settled


def as_job(job_id="j1"):
    return set_current(JobContext(job_id, "q", "t:f", 1, 1, 0))


async def raise_later(exc, seconds=0.01):
    await asyncio.sleep(seconds)
    raise exc


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()])
def test_a_task_a_job_made_ends_with_task_exit_and_the_loop_runs_on(caplog, exc):
    aio = EventLoop(threaded=False)
    token = as_job("culprit")
    try:
        async def job():
            child = asyncio.get_running_loop().create_task(raise_later(exc), name="kid")
            with pytest.raises(TaskExit):
                await child
            return "went on"
        with caplog.at_level(logging.ERROR, "mpqueue.worker"):
            assert aio.run(job()) == "went on"
    finally:
        reset_current(token)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "'kid'" in line and "culprit" in line and type(exc).__name__ in line


def test_a_task_left_behind_raising_an_exit_does_not_surface_in_the_next_run(caplog):
    aio = EventLoop(threaded=False)
    token = as_job("culprit")
    try:
        async def leave():
            asyncio.get_running_loop().create_task(raise_later(SystemExit(1)))
        aio.run(leave())
    finally:
        reset_current(token)
    # the next run (another job, no job context) is where the task raises
    with caplog.at_level(logging.ERROR, "mpqueue.worker"):
        assert aio.run(asyncio.sleep(0.05, result="innocent")) == "innocent"
    assert ["culprit" in r.getMessage() for r in caplog.records] == [True]


def test_an_exit_from_a_callback_or_a_stop_is_logged_and_the_run_completes(caplog):
    aio = EventLoop(threaded=False)

    async def job():
        loop = asyncio.get_running_loop()
        loop.call_soon(sys.exit, 5)
        await asyncio.sleep(0.01)
        loop.stop()
        await asyncio.sleep(0.01)
        return "done"
    with caplog.at_level(logging.ERROR, "mpqueue.worker"):
        assert aio.run(job()) == "done"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "SystemExit: 5" in lines[0] and "stopped the event loop" in lines[1]


def test_what_the_awaited_thing_itself_raises_is_raised():
    # a start hook that calls sys.exit() fails the worker's boot, as before
    aio = EventLoop(threaded=False)
    with pytest.raises(SystemExit):
        aio.run(raise_later(SystemExit(2)))


def test_the_threaded_loop_keeps_turning_after_an_exit_or_a_stop_and_ends_on_close():
    aio = EventLoop(threaded=True)
    loop = aio.ensure()
    loop.call_soon_threadsafe(sys.exit, 1)
    loop.call_soon_threadsafe(loop.stop)
    assert aio.run(asyncio.sleep(0.01, result="alive")) == "alive"
    before = aio.turned
    deadline = time.monotonic() + 5
    while aio.turned == before and time.monotonic() < deadline:
        time.sleep(0.01)  # ok: polling for the loop's next stamp
    assert aio.turned > before and aio.thread.is_alive()
    aio.close()
    aio.thread.join(5)
    assert not aio.thread.is_alive()


def test_settled_reads_a_brokers_reply():
    assert Settled.of("retried", True) == Settled("retried")
    assert Settled.of("failed", False) == Settled("stale")
    assert Settled.of("failed", "kill") == Settled("cancelled", "kill")


def test_the_cancel_probe_remembers_what_was_asked():
    answers = iter([None, "ask"])
    now = [0.0]
    probe = CancelProbe(lambda: next(answers), every=1.0, clock=lambda: now[0])
    assert probe() is False and probe.asked is None
    now[0] = 1.0
    assert probe() is True and probe.asked == "ask"
    assert probe() is True            # for good, without asking again


def _spy_on_select(monkeypatch) -> list:
    waits, real = [], select.select

    def spy(r, w, x, timeout=None):
        waits.append(timeout)
        return real(r, w, x, timeout)
    monkeypatch.setattr(select, "select", spy)
    return waits


def test_a_timer_is_waited_for_to_the_microsecond_not_rounded_up_to_the_millisecond(monkeypatch):
    # epoll_wait() takes whole milliseconds: rounded up, a 12.3 ms wait was 13 ms
    waits = _spy_on_select(monkeypatch)
    aio = EventLoop(threaded=False)
    start = time.monotonic()
    aio.run(asyncio.sleep(0.0123))
    assert time.monotonic() - start >= 0.0123          # never early
    assert any(0.011 < w < 0.0123 for w in waits)      # the wait the timer asked for


def test_an_epoll_fd_too_high_for_select_waits_in_milliseconds_as_before(monkeypatch):
    waits = _spy_on_select(monkeypatch)
    monkeypatch.setattr(aio_mod, "_FD_SETSIZE", 0)
    aio = EventLoop(threaded=False)
    start = time.monotonic()
    assert aio.run(asyncio.sleep(0.0123, result="slept")) == "slept"
    assert time.monotonic() - start >= 0.0123 and waits == []
