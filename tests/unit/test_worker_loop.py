"""The worker's one loop (worker/loop.py) over a source and an executor, on a
fake clock and a fake broker; and its control line (worker/control.py), which
notices a stop between short jobs without a system call per job. No processes."""
from __future__ import annotations

import os

from mpqueue import ipc
from mpqueue.core import envelope as jobmod
from mpqueue.worker.control import LOOK_EVERY, Control
from mpqueue.worker.dispatched import DispatchedSource
from mpqueue.worker.grab import GrabSource
from mpqueue.worker.inline import InlineExecutor
from mpqueue.worker.loop import EXECUTORS, SOURCES, WorkerLoop
from mpqueue.worker.recycle import Recycler

from .worker_fakes import Clock, FakeBroker, FakeControl, FakeRunner, envelope


class StopWhenIdle(FakeControl):
    """Stops the loop the first time it has nothing to do."""

    def wait(self, fds, timeout):
        self.stopping = True
        return super().wait(fds, timeout)


class Recorder(FakeRunner):
    """Runs jobs as FakeRunner, calling `on_run(job_id)` first."""
    on_run = staticmethod(lambda job_id: None)

    def run(self, token, env):
        self.on_run(jobmod.job_id(env))
        return super().run(token, env)


def grab_loop(durations=None, max_jobs=0, prefetch=16):
    clock = Clock()
    broker, control = FakeBroker(), StopWhenIdle(clock)
    runner = Recorder(clock, durations)
    source = GrabSource(broker, "q", "node/1", 60.0, control, 5.0, clock)
    executor = InlineExecutor(runner, "q", clock)
    recycler = Recycler("q", max_jobs, 0, control.stop, clock=clock)
    return WorkerLoop(source, executor, control, recycler, prefetch, clock), broker, runner


def test_every_job_runs_once_and_its_ack_is_delivered():
    loop, broker, runner = grab_loop()
    ids = broker.push(25)
    loop.run()
    assert runner.ran == ids and sorted(broker.acked) == sorted(ids) and broker.held_jobs == {}


def test_batches_grow_as_jobs_prove_short():
    loop, broker, _ = grab_loop({"t:quick": 0.001})
    broker.push(40)
    loop.run()
    counts = [r["count"] for r in broker.reserves]
    assert counts[0] == 1 and max(counts) > 1 and max(counts) <= 10


def test_max_jobs_recycles_after_that_many_and_never_reserves_more():
    loop, broker, runner = grab_loop(max_jobs=5)
    ids = broker.push(20)
    loop.run()
    assert runner.ran == ids[:5] and loop.control.stopping
    assert sum(r["count"] for r in broker.reserves) == 5 and broker.released == []
    assert [jobmod.job_id(e) for e in broker.ready] == ids[5:]


def test_a_stop_during_a_stream_of_jobs_takes_effect_after_the_job_running():
    loop, broker, runner = grab_loop({"t:quick": 0.001})
    ids = broker.push(30)
    loop.executor.avg = 0.0005          # batches of ten
    runner.on_run = lambda job_id: job_id == ids[2] and loop.control.stop()
    loop.run()
    assert runner.ran == ids[:3]
    assert [jobmod.job_id(e) for e in broker.ready] == ids[3:]      # the rest of the batch went back, in order


def test_the_acks_owed_are_delivered_before_a_slow_job_starts():
    loop, broker, runner = grab_loop({"t:quick": 0.0001, "t:slow": 0.5})
    loop.executor.avg, loop.executor.task_avg = 0.001, {"t:quick": 0.0001}
    quick = broker.push(2)
    slow = broker.push(1, task="t:slow")
    acked_when_slow_ran = []
    runner.on_run = lambda job_id: job_id in slow and acked_when_slow_ran.extend(broker.acked)
    loop.run()
    assert sorted(acked_when_slow_ran) == sorted(quick)


def test_a_job_that_waited_over_a_second_behind_others_gets_its_lease_stretched():
    loop, broker, runner = grab_loop({"t:quick": 0.6})
    loop.executor.avg = 0.001            # the batch was sized for short jobs; these turn out slow
    ids = broker.push(3)
    loop.run()
    assert broker.reserves[0]["count"] >= 3
    assert broker.extended == [ids[2]]   # started 1.2 s after it was reserved; the second at 0.6 s


def test_the_loop_holds_no_more_than_max_jobs_leaves_minus_running_and_held():
    class Busy(InlineExecutor):
        def running(self):
            return 2

        def wanted(self, prefetch, held):
            return 10
    clock = Clock()
    broker, control = FakeBroker(), StopWhenIdle(clock)
    source = GrabSource(broker, "q", "node/1", 60.0, control, 5.0, clock)
    loop = WorkerLoop(source, Busy(FakeRunner(clock), "q", clock), control,
                      Recycler("q", 5, 0, control.stop, clock=clock), 16, clock)
    loop.turn()
    assert broker.reserves[0]["count"] == 3


def test_dispatched_jobs_run_and_each_end_is_reported_to_the_supervisor():
    clock = Clock()
    control = StopWhenIdle(clock)
    sent = []
    for _ in range(3):
        job_id, env = envelope()
        control.inbox.append({"type": "job", "id": job_id, "token": "t", "envelope": env})
        control.received += 1
        sent.append(job_id)
    runner = FakeRunner(clock)
    loop = WorkerLoop(DispatchedSource(control, control), InlineExecutor(runner, "q", clock), control,
                      Recycler("q", 0, 0, control.stop, clock=clock), 16, clock)
    loop.run()
    done = [m for m in control.reports if m["type"] == "done"]
    assert [m["id"] for m in done] == sent


def test_the_mode_and_the_concurrency_pick_a_strategy_from_a_table():
    assert set(SOURCES) == {"grab", "dispatch"} and 1 in EXECUTORS


# -- the control line

class Signals:
    def __init__(self):
        self.r, self.w = os.pipe()
        self.arrived = []

    def fileno(self):
        return self.r

    def pending(self):
        return bool(self.arrived)

    def drain(self):
        os.read(self.r, 100)
        out, self.arrived = self.arrived, []
        return out


def control_line(clock):
    r, w = os.pipe()
    signals = Signals()
    return Control(ipc.Channel(r), signals, ipc.Scoreboard(1, clock=clock), clock), ipc.Channel(w), signals


def test_a_stop_over_the_pipe_is_noticed_within_look_every_without_a_poll_per_job():
    clock = Clock()
    control, supervisor, _ = control_line(clock)
    supervisor.send({"type": ipc.STOP})
    control.look()                           # no time has passed since the last look: no poll
    assert not control.stopping
    clock.advance(LOOK_EVERY * 1.01)
    control.look()
    assert control.stopping


def test_a_signal_is_noticed_at_the_next_look():
    clock = Clock()
    control, _, signals = control_line(clock)
    signals.arrived.append(15)
    os.write(signals.w, b"!")
    control.look()
    assert control.stopping


def test_jobs_sent_over_the_pipe_wait_in_the_inbox_and_every_wait_beats():
    clock = Clock()
    control, supervisor, _ = control_line(clock)
    supervisor.send({"type": ipc.JOB, "id": "a", "token": "t", "envelope": "e"})
    clock.advance(1.0)
    control.wait([], 1.0)
    assert [m["id"] for m in control.take_jobs(4)] == ["a"] and control.take_jobs(4) == []
    assert control.scoreboard.read().beat == clock.t


# -- recycling

class Tally:
    def __init__(self):
        self.reasons = []

    def recycling(self, reason):
        self.reasons.append(reason)


def test_memory_over_the_limit_recycles_and_is_read_at_most_every_tenth_of_a_second():
    clock, stops, reads, tally = Clock(), [], [], Tally()
    rss = iter([100.0, 300.0, 300.0])
    recycler = Recycler("q", 0, 200, lambda: stops.append(1), tally, clock,
                        rss=lambda: reads.append(clock.t) or next(rss))
    recycler.after_job()                  # 100 MB: fine
    recycler.after_job()                  # too soon to look again
    clock.advance(0.1)
    recycler.after_job()                  # 300 MB: recycle
    assert len(reads) == 2 and stops == [1] and tally.reasons == ["memory"]


def test_max_jobs_recycles_with_its_reason_and_leaves_a_count_of_jobs():
    stops, tally = [], Tally()
    recycler = Recycler("q", 3, 0, lambda: stops.append(1), tally, Clock())
    assert recycler.left() == 3
    recycler.after_job()
    recycler.after_job()
    assert recycler.left() == 1 and stops == []
    recycler.after_job()
    assert stops == [1] and tally.reasons == ["max_jobs"]


def test_a_stream_of_short_jobs_makes_no_poll_per_job_yet_sees_a_stop_within_look_every(monkeypatch):
    # Given a worker loop on the real control line, counting its poll() calls
    import mpqueue.worker.control as control_module
    polls = []
    real = control_module.proc.readable
    monkeypatch.setattr(control_module.proc, "readable", lambda fds, t: polls.append(t) or real(fds, t))
    clock = Clock()
    control, supervisor, _ = control_line(clock)
    broker, runner = FakeBroker(), Recorder(clock, default=0.00001)       # 10 us jobs
    ids = broker.push(1000)
    loop = WorkerLoop(GrabSource(broker, "q", "node/1", 60.0, control, 5.0, clock),
                      InlineExecutor(runner, "q", clock), control, Recycler("q", 0, 0, control.stop, clock=clock),
                      16, clock)
    # When the supervisor asks it to stop after job 500
    runner.on_run = lambda job_id: job_id == ids[499] and supervisor.send({"type": ipc.STOP})
    loop.run()
    # Then ~5 ms of work cost a handful of polls, and the stop took effect within LOOK_EVERY (200 jobs)
    assert len(polls) <= 6
    assert 500 <= len(runner.ran) <= 500 + LOOK_EVERY / 0.00001 + 1
