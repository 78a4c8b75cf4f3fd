"""The worker's two executors (worker/inline.py, worker/slots.py): how much work
each wants in hand (the prefetch budget), which job may be slow, and the slots'
deadlines: an async job past its timeout is cancelled, a thread job past it
makes the executor give up (OVERDUE), a blocked event loop blames the job that
blocks it. A fake clock where the test is about arithmetic; the real one (and
a real event loop) where it is about asyncio. No processes."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mpqueue import proc
from mpqueue.core import tasks
from mpqueue.core.schema import QueueConfig, ServiceConfig
from mpqueue.execution import runner as runner_mod
from mpqueue.execution.aio import EventLoop
from mpqueue.execution.runner import Runner
from mpqueue.ipc import OVERDUE, Scoreboard
from mpqueue.worker.inline import InlineExecutor
from mpqueue.worker import slots as slots_module
from mpqueue.worker.slots import Slots
from mpqueue.worker.units import Unit

from .worker_fakes import Clock, FakeBroker, FakeControl, FakeRunner, add_settling, envelope

GATE = threading.Event()


def _register(name, func):
    tasks.register(tasks.TaskInfo(name, func, tasks.TaskOptions(), None, origin=f"tests.unit.test_executor:{name}"))


def _held_thread_job():
    GATE.wait(10)
    return "late"


async def _sleeper(seconds):
    await asyncio.sleep(seconds)
    return "slept"


async def _blocker(seconds):
    await asyncio.sleep(0.02)
    time.sleep(seconds)              # blocks the loop: the bug the check must name
    return "blocked"


EVENTS: dict = {}                   # asyncio.Events of one test, made by it
LOOP_GATE = threading.Event()       # holds the event loop (a job blocking it) until set
TASKS_SEEN: list = []


async def _sets_go():
    await asyncio.sleep(0.05)
    EVENTS["go"].set()              # wakes the two below in one loop turn, first-come first


async def _first_to_wake():
    await EVENTS["go"].wait()
    return "first"


async def _then_blocks():
    await EVENTS["go"].wait()
    LOOP_GATE.wait(10)              # blocks the loop, in the same turn as the job above ended
    return "second"


async def _quick_async():
    return 1


async def _counts_tasks():
    TASKS_SEEN.append(len(asyncio.all_tasks()))


_register("exe:held", _held_thread_job)
_register("exe:sleeper", _sleeper)
_register("exe:blocker", _blocker)
_register("exe:quick", lambda: 1)
_register("exe:sets_go", _sets_go)
_register("exe:first_to_wake", _first_to_wake)
_register("exe:then_blocks", _then_blocks)
_register("exe:counts_tasks", _counts_tasks)
_register("exe:quick_async", _quick_async)


def unit(task, *args, received=None):
    from mpqueue.core import envelope as jobmod
    job_id, env = jobmod.encode(task, args)
    u = Unit(f"tok-{job_id}", env, received)
    u.task, u.id = task, job_id
    return u


# -- inline: one job at a time in the main thread

def run_jobs(executor, runner, clock, task, n):
    for _ in range(n):
        _, env = envelope(task)
        u = Unit("tok", env)
        u.task = task
        executor.start(u)
    return executor.collect()


def test_inline_first_reserve_takes_one_job():
    clock = Clock()
    assert InlineExecutor(FakeRunner(clock), "q", clock).wanted(prefetch=16, held=0) == 1


def test_inline_batch_size_is_about_ten_ms_of_recent_work():
    # Given a stream of 2.4 ms jobs
    clock = Clock()
    runner = FakeRunner(clock, {"t:short": 0.0024})
    ex = InlineExecutor(runner, "q", clock)
    run_jobs(ex, runner, clock, "t:short", 60)
    # Then a reserve takes four of them (4 x 2.4 ms <= 10 ms < 5 x 2.4 ms)
    assert ex.wanted(prefetch=16, held=0) == 4
    assert ex.wanted(prefetch=3, held=0) == 3            # never above prefetch
    assert ex.wanted(prefetch=1, held=0) == 1
    assert ex.wanted(prefetch=16, held=2) == 0           # jobs in hand run first


def test_inline_slow_jobs_are_reserved_one_at_a_time():
    clock = Clock()
    runner = FakeRunner(clock, {"t:slow": 0.5})
    ex = InlineExecutor(runner, "q", clock)
    run_jobs(ex, runner, clock, "t:slow", 3)
    assert ex.wanted(prefetch=16, held=0) == 1


def test_inline_a_task_not_seen_yet_counts_as_slow_and_a_quick_one_does_not():
    clock = Clock()
    runner = FakeRunner(clock, {"t:quick": 0.0001, "t:slow": 0.05})
    ex = InlineExecutor(runner, "q", clock)
    assert ex.blocks(unit("t:quick"))
    run_jobs(ex, runner, clock, "t:quick", 20)
    run_jobs(ex, runner, clock, "t:slow", 20)
    assert not ex.blocks(unit("t:quick")) and ex.blocks(unit("t:slow"))


def test_inline_runs_the_job_in_start_and_hands_its_ack_to_collect():
    clock = Clock()
    runner = FakeRunner(clock)
    ex = InlineExecutor(runner, "q", clock)
    u = unit("t:quick")
    ex.start(u)
    ((got, ack),) = ex.collect()
    assert got is u and ack.id == u.id and ex.collect() == []


# -- slots: several jobs beside the main thread

@pytest.fixture
def slots_on():
    made = []

    def make(clock=time.monotonic, timeout=2.0, size=4, prefetch=16):
        broker = add_settling(FakeBroker())
        cfg = QueueConfig(name="q", timeout=timeout, concurrency=size, prefetch=prefetch, retries=0)
        runner = Runner(broker, ServiceConfig(name="s", broker="sqlite:///x"), cfg, 0, Scoreboard(size),
                        EventLoop(threaded=True), clock=clock)
        report = FakeControl(Clock())
        slots = Slots(runner, size, report, clock)
        made.append(slots)
        return slots, broker, report
    yield make
    GATE.set()
    for slots in made:
        slots.close()
    GATE.clear()


def wait_ended(slots, n=1, within=5.0):
    ended, deadline = [], time.monotonic() + within
    while len(ended) < n and time.monotonic() < deadline:
        proc.readable([slots], max(0.0, deadline - time.monotonic()))     # woken by a job's end
        ended += slots.collect()
    return ended


def test_slots_want_one_job_per_free_slot_until_a_job_has_ended(slots_on):
    slots, _, _ = slots_on(clock=Clock())
    assert slots.wanted(prefetch=16, held=0) == 4
    assert slots.wanted(prefetch=16, held=1) == 3


def test_slots_want_extra_jobs_for_about_ten_ms_of_slot_time(slots_on):
    # Given 4 slots whose jobs take 20 ms
    clock = Clock()
    slots, _, _ = slots_on(clock=clock)
    slots.start(unit("exe:quick"))
    wait_ended(slots, 0, within=0.2)       # it ran; its end is recorded below, 20 ms later
    clock.advance(0.020)
    assert len(wait_ended(slots)) == 1
    # Then on top of the 4 free slots, 2 more (4 slots x 10 ms / 20 ms)
    assert slots.wanted(prefetch=16, held=0) == 6
    assert slots.wanted(prefetch=2, held=0) == 5         # prefetch bounds the extra
    assert slots.wanted(prefetch=1, held=0) == 4


def test_a_thread_job_past_its_timeout_makes_the_slots_give_up_with_overdue(slots_on):
    clock = Clock()
    slots, _, report = slots_on(clock=clock, timeout=2.0)
    u = unit("exe:held")
    slots.start(u)
    slots.check(clock.t + 2.0 - 0.001)
    assert not slots.overran and report.reports == []
    slots.check(clock.t + 2.0)                            # at its timeout: it can't be interrupted
    assert slots.overran and slots.free() == 0
    assert report.reports == [{"type": OVERDUE, "id": u.id}]


def test_an_async_job_past_its_timeout_is_cancelled_and_fails_as_timeout(slots_on):
    slots, broker, report = slots_on(timeout=0.2)
    u = unit("exe:sleeper", 30)
    slots.start(u)
    slots.kick()
    ((got, ack),) = wait_ended(slots, within=3.0)
    assert got is u and ack is None
    assert [job_id for job_id, _ in broker.failed] == [u.id] and "timeout" in broker.failed[0][1]
    assert not slots.overran and report.reports == []


def test_a_blocked_event_loop_blames_the_job_blocking_it_not_the_oldest(slots_on):
    slots, _, report = slots_on(timeout=0.3)
    innocent, culprit = unit("exe:sleeper", 30), unit("exe:blocker", 0.8)
    slots.start(innocent)
    slots.start(culprit)
    slots.kick()
    # The culprit holds the loop from ~20 ms to ~820 ms: watch it as the worker's main thread does
    deadline = time.monotonic() + 5.0
    while not slots.overran and time.monotonic() < deadline:
        proc.readable([slots], 0.02)
        slots.check(time.monotonic())
    assert slots.overran
    assert report.reports == [{"type": OVERDUE, "id": culprit.id}]
    assert len(wait_ended(slots, 2)) == 2                  # both cancelled at their timeout once the loop turns


def test_a_job_refused_at_its_start_ends_at_once_and_frees_its_slot(slots_on):
    slots, broker, _ = slots_on(clock=Clock())
    u = unit("exe:not_registered")
    slots.start(u)
    assert slots.collect() == [(u, None)] and slots.free() == 4
    assert [job_id for job_id, _ in broker.failed] == [u.id]


def test_an_async_jobs_end_reaches_the_main_thread_before_the_loop_runs_the_next_step(slots_on):
    # Given two jobs that one event wakes in the same loop turn, the second then holding the loop
    EVENTS["go"] = asyncio.Event()
    slots, _, _ = slots_on(timeout=30.0)
    setter, first, second = unit("exe:sets_go"), unit("exe:first_to_wake"), unit("exe:then_blocks")
    try:
        for u in (first, second, setter):
            slots.start(u)
        slots.kick()
        # When the event is set
        ended = wait_ended(slots, 2, within=3.0)
        # Then the first one's end is in the main thread's hands while the second holds the loop
        # (a done callback would have waited for the loop's next turn, after the second's step)
        assert {u for u, _ in ended} == {setter, first} and slots.running() == 1
    finally:
        LOOP_GATE.set()
    assert [u for u, _ in wait_ended(slots)] == [second]
    LOOP_GATE.clear()


def test_an_async_job_runs_as_the_one_task_on_the_loop(slots_on):
    # A watcher task per job (cancel requests) would be a second task: two more loop steps a job
    TASKS_SEEN.clear()
    slots, _, _ = slots_on()
    slots.start(unit("exe:counts_tasks"))
    slots.kick()
    assert len(wait_ended(slots)) == 1
    assert TASKS_SEEN == [1]


def test_a_cancel_request_cancels_a_running_async_job_at_the_next_look(slots_on, monkeypatch):
    # Given a job asked to stop while it awaits, looked for every 50 ms here (1 s in service)
    monkeypatch.setattr(runner_mod, "CANCEL_POLL", 0.05)
    slots, broker, report = slots_on(timeout=30.0)
    broker.cancel_requested = lambda queue, job_id: "ask"
    u = unit("exe:sleeper", 30)
    slots.start(u)
    slots.kick()
    # Then it is cancelled long before its 30 s and settled as an error (the broker's standing
    # request ends it as cancelled), not as a timeout
    ((got, ack),) = wait_ended(slots, within=3.0)
    assert got is u and ack is None
    assert broker.retried == [u.id] and broker.failed == []
    assert not slots.overran and report.reports == []


def test_a_slow_cancel_look_holds_neither_the_loop_nor_the_other_jobs(slots_on, monkeypatch):
    # Given a job whose cancel look hangs on a slow broker (until released), looked for every 50 ms
    monkeypatch.setattr(runner_mod, "CANCEL_POLL", 0.05)
    slots, broker, _ = slots_on(timeout=30.0)
    slow, quick = unit("exe:sleeper", 30), unit("exe:sleeper", 0.3)
    released = threading.Event()

    def cancel_requested(queue, job_id):
        if job_id != slow.id:
            return None
        released.wait(10)
        return "ask"
    broker.cancel_requested = cancel_requested
    try:
        slots.start(slow)
        slots.start(quick)
        slots.kick()
        # Then the other job ends on time while the look hangs, and the loop keeps turning
        assert [u for u, _ in wait_ended(slots, within=2.0)] == [quick]
        assert time.monotonic() - slots.runner.aio.turned < 0.5
    finally:
        released.set()
    # And once the broker answers, the request it saw cancels the slow job
    assert [u for u, _ in wait_ended(slots, within=3.0)] == [slow]
    assert broker.retried == [slow.id]


def test_an_async_job_whose_end_report_raises_ends_once(slots_on, monkeypatch):
    # Given a wake-up of the main thread that raises once, from inside the job's task
    slots, broker, _ = slots_on(timeout=30.0)
    real_write, raised = slots_module.os.write, []

    def write_failing_once(fd, data):
        if not raised:
            raised.append(fd)
            raise OSError("the wake-up failed")
        return real_write(fd, data)
    monkeypatch.setattr(slots_module.os, "write", write_failing_once)
    u, after = unit("exe:quick_async"), unit("exe:sleeper", 0.2)
    # When the job ends (its task raises; its done callback sees the task's error)
    slots.start(u)
    slots.kick()
    slots.start(after)          # a later job's end wakes the main thread
    slots.kick()
    # Then its end is recorded once: one ack, one slot freed
    ended = wait_ended(slots, 2, within=3.0)
    assert raised and sorted(got.id for got, _ in ended) == sorted([u.id, after.id])
    assert slots.free() == 4 and slots.running() == 0
