"""The pool's decisions, on a fake clock with a fake spawner: no processes.

The Pool and Recovery are the real ones; the edges are the stand-ins of
supervisor_fakes.py, plus a scoreboard that counts its reads and a tally."""
from __future__ import annotations

import logging

import pytest

from mpqueue import ipc
from mpqueue.brokers import Held, Reserved
from mpqueue.core.config import QueueConfig, ServiceConfig
from mpqueue.supervisor import metrics, status
from mpqueue.supervisor.handles import KILLS, KillReason
from mpqueue.supervisor.pool import STALE_AFTER, Pool
from mpqueue.supervisor.recovery import Recovery
from mpqueue.tally import Totals
from tests.unit.supervisor_fakes import Broker, Clock, Spawner, envelope, exit_status, service


class CountingBoard(ipc.Scoreboard):
    """A real scoreboard that counts how often the supervisor's side reads it."""
    reads = 0

    def read(self):
        self.reads += 1
        return super().read()


class Tally:
    """A worker's job counters as count_exit folds them: none, and no exit reason of its own."""

    def __init__(self, reason=""):
        self.reason = reason

    def read(self):
        return Totals()

    def exit_reason(self):
        return self.reason


class CountingSpawner(Spawner):
    def __call__(self, service, queue_cfg, index, node_id, generation, inherited, started_at):
        h = super().__call__(service, queue_cfg, index, node_id, generation, inherited, started_at)
        h.scoreboard = CountingBoard(queue_cfg.concurrency, self.clock)
        h.tally = Tally()
        return h


def make_pool(cfg=None):
    cfg = cfg or service()
    clock = Clock()
    broker = Broker()
    boot_failures = []
    pool = Pool(cfg, "node", clock, CountingSpawner(clock), Recovery(broker, cfg.queues, clock),
                lambda h, delay: boot_failures.append((h, delay)))
    pool.broker, pool.boot_failures = broker, boot_failures      # for the tests' eyes only
    return pool


def ready(pool, h):
    # A worker's first words: READY, then (dispatch mode) its first loop turn asks
    # for a job per slot (worker/dispatched.py).
    h.report.inbox.append({"type": ipc.READY, "tasks": {}})
    h.report.inbox.append(ipc.want_message(h.scoreboard.size))
    pool.on_reports(h)


def started(pool):
    pool.top_up()
    for h in pool.handles():
        ready(pool, h)
    return pool.handles()


def two_queues():
    return ServiceConfig(name="svc", broker="redis://h/0", imports=("t",), lease_grace=2.0,
                         queues={"a": QueueConfig("a", workers=2),
                                 "b": QueueConfig("b", workers=1, mode="dispatch")})


# -- top-up and boot back-off
def test_top_up_starts_a_worker_for_every_empty_slot_and_only_those():
    # Given a pool of two workers, one of which has died
    pool = make_pool(service(workers=2))
    first, second = started(pool)
    pool.on_exit(first.pid, exit_status(1))
    # When it tops up, Then the dead one's slot alone gets a new worker
    pool.top_up()
    assert len(pool.handles()) == 2 and second in pool.handles()
    assert {h.index for h in pool.handles()} == {0, 1}


def test_a_worker_dying_before_ready_is_retried_only_after_its_back_off():
    pool = make_pool()
    pool.top_up()
    h, = pool.handles()
    pool.on_exit(h.pid, exit_status(ipc.EXIT_BOOT_FAILED))
    (failed, delay), = pool.boot_failures
    assert failed is h and delay == 0.5 and pool.booting_failures() == [h]
    pool.top_up()
    assert pool.handles() == []                       # not before its back-off
    pool.clock.advance(0.5)
    pool.top_up()
    assert len(pool.handles()) == 1
    pool.begin_turn()
    assert pool.booting_failures() == []              # a new turn forgets the last one's


# -- the kill-reason table: what a kill means for the jobs and the restarts metric
@pytest.mark.parametrize("reason, job_settled, restart", [
    (KillReason.TIMEOUT, "release", "timeout"),       # its siblings did nothing wrong
    (KillReason.CANCELLED, "release", "cancelled"),
    (KillReason.STALE, "retry", "stale"),             # judged as a crash: what it ran spends an attempt
    (KillReason.SHUTDOWN, "release", None),           # a stop is not a restart
])
def test_a_killed_worker_is_settled_and_counted_as_its_reason_says(reason, job_settled, restart):
    # Given a worker running one job
    pool = make_pool()
    h, = started(pool)
    pool.broker.held_jobs = [Held("j1", "t1", h.consumer, envelope())]
    h.scoreboard.start("j1", "t1", 60.0)
    # When it is killed for `reason` and reaped
    h.kill(reason)
    pool.on_exit(h.pid, exit_status(signal_number=9))
    # Then its job is settled as the table says, and the restart counted under its reason
    assert (job_settled, "j1") in pool.broker.calls
    assert pool.restarts == ({("q", restart): 1} if restart else {})


def test_every_kill_reason_has_one_rule_and_restart_reasons_are_metric_labels():
    assert set(KILLS) == set(KillReason)
    assert {r.restart for r in KILLS.values()} - {None} <= set(metrics.RESTART_REASONS)
    assert [str(r) for r in KillReason] == ["timeout", "cancelled", "stale", "shutdown"]


def test_a_worker_that_crashed_on_its_own_counts_as_crashed_and_a_clean_exit_by_its_reason():
    pool = make_pool(service(workers=2))
    crashed, tired = started(pool)
    tired.tally = Tally("max_jobs")
    pool.on_exit(crashed.pid, exit_status(signal_number=11))
    pool.on_exit(tired.pid, exit_status(0))
    assert pool.restarts == {("q", "crashed"): 1, ("q", "max_jobs"): 1}


# -- killing for jobs: overdue, or cancelled with kill
def test_a_job_is_overdue_at_its_deadline_exactly():
    # Given a job of 5 s started now
    pool = make_pool(service(timeout=5))
    h, = started(pool)
    pool.broker.held_jobs = [Held("j1", "t1", h.consumer, envelope())]
    h.scoreboard.start("j1", "t1", 5.0)
    pool.clock.advance(4.999)
    pool.enforce_timeouts()
    assert h.killed_for is None
    # When the clock reaches its deadline, not a tick later, Then it is killed and failed as a timeout
    pool.clock.advance(0.001)
    pool.enforce_timeouts()
    assert h.killed_for == KillReason.TIMEOUT and h.overdue == {"j1"}
    assert ("fail", "j1") in pool.broker.calls


def test_killing_for_an_overdue_job_says_which_and_what_goes_back(caplog):
    pool = make_pool(service(timeout=5, concurrency=2))
    h, = started(pool)
    h.scoreboard.start("j1", "t1", 5.0, slot=0)
    h.scoreboard.start("j2", "t2", 60.0, slot=1)
    pool.clock.advance(5)
    with caplog.at_level(logging.ERROR, "mpqueue.supervisor"):
        pool.enforce_timeouts()
    assert "job j1 exceeded its timeout (5 s): killed worker q/0, 1 other running jobs go back unspent" \
        in caplog.messages


def test_a_cancel_with_kill_kills_only_the_worker_running_that_job_and_settles_it_as_crashed(caplog):
    # Given two workers, each running a job
    pool = make_pool(service(workers=2, timeout=60))
    one, two = started(pool)
    pool.broker.held_jobs = [Held("j1", "t1", one.consumer, envelope("j1")),
                             Held("j2", "t2", two.consumer, envelope("j2"))]
    one.scoreboard.start("j1", "t1", 60.0)
    two.scoreboard.start("j2", "t2", 60.0)
    # When j2 is to be killed
    with caplog.at_level(logging.WARNING, "mpqueue.supervisor"):
        pool.kill_cancelled("q", {"j2"})
        pool.kill_cancelled("other", {"j1"})          # another queue's request touches nothing here
    # Then its worker alone is killed, and j2 settled at once as a crash (its request ends it as cancelled)
    assert (one.killed_for, two.killed_for) == (None, KillReason.CANCELLED)
    assert ("retry", "j2") in pool.broker.calls and two.overdue == {"j2"}
    assert f"killed worker q/1 (pid {two.pid}) to cancel job j2 (kill)" in caplog.messages


def test_an_idle_worker_silent_too_long_is_killed_as_stale():
    pool = make_pool()
    h, = started(pool)
    pool.clock.advance(STALE_AFTER + 1)
    pool.enforce_timeouts()
    assert h.killed_for == KillReason.STALE


# -- one reading of the scoreboards per turn
def test_a_turn_reads_each_scoreboard_once_whatever_asks():
    # Given workers on a grab and a dispatch queue, one of them busy
    pool = make_pool(two_queues())
    handles = started(pool)
    handles[0].scoreboard.start("j1", "t1", 60.0)
    before = {h: h.scoreboard.reads for h in handles}
    # When one turn's judging asks everything it asks of the boards
    pool.look()
    pool.enforce_timeouts()
    pool.holders()
    pool.next_deadline(pool.clock())
    pool.timeout(pool.clock())
    pool.kill_cancelled("a", {"nothing"})
    status.status_line(pool.cfg, pool.boards(), pool.totals, None, True)
    status.node_info(pool.cfg, pool.boards(), pool.totals, "node", 0.0)
    metrics.snapshot(pool, pool.recovery, ["a", "b"], True)
    pool.end_look()
    # Then each board was read once
    assert [h.scoreboard.reads - before[h] for h in handles] == [1, 1, 1]


def test_outside_a_look_every_question_reads_the_board_afresh():
    pool = make_pool(service(timeout=5))
    h, = started(pool)
    pool.look()
    pool.end_look()
    h.scoreboard.start("j1", "t1", 0.25)              # after the turn's reading
    assert pool.next_deadline(pool.clock()) == pytest.approx(0.25)


def test_a_dead_workers_last_board_is_read_when_it_is_reaped_not_taken_from_the_turn():
    # Given a turn's reading that saw the worker idle
    pool = make_pool()
    h, = started(pool)
    pool.broker.held_jobs = [Held("j1", "t1", h.consumer, envelope())]
    pool.look()
    h.scoreboard.start("j1", "t1", 60.0)
    # When it dies running the job, Then the job spends its attempt (the final read saw it)
    pool.on_exit(h.pid, exit_status(signal_number=9))
    pool.end_look()
    assert ("retry", "j1") in pool.broker.calls


# -- holders: whose leases are renewed
def test_holders_of_a_grab_queue_are_all_its_workers_once_one_is_busy():
    pool = make_pool(two_queues())
    a0, a1, b0 = started(pool)
    assert pool.holders() == {}                       # nothing runs: nothing to renew
    a0.scoreboard.start("j1", "t1", 60.0)
    assert pool.holders() == {"a": [a0.consumer, a1.consumer]}


def test_a_dispatch_queues_holder_is_the_dispatcher_never_its_workers():
    pool = make_pool(two_queues())
    a0, a1, b0 = started(pool)
    dispatcher = pool.holdings[("b", "dispatch")]
    pool.broker.to_reserve = [Reserved("t1", envelope("j1"))]
    pool.pump([], False, lambda ok, exc=None: None)
    b0.scoreboard.start("j1", "t1", 60.0)
    assert pool.holders() == {"b": [dispatcher.consumer]}


def test_each_mode_gets_its_own_holding_and_a_queue_keeps_one():
    pool = make_pool(two_queues())
    started(pool)
    assert {k: type(v).__name__ for k, v in pool.holdings.items()} == {("a", "grab"): "GrabHolding",
                                                                       ("b", "dispatch"): "Dispatcher"}


# -- a reload's overlap
def test_old_workers_retire_only_as_new_ones_are_ready_and_an_exit_meanwhile_is_replaced():
    # Given two serving workers, and a reload to a new generation
    pool = make_pool(service(workers=2))
    old = started(pool)
    new_cfg = service(workers=2, timeout=7)
    pool.configure(new_cfg, 1)
    pool.top_up()
    new = [h for h in pool.handles() if h.generation == 1]
    pool.retire_replaced()
    assert len(new) == 2 and not any(h.retiring for h in old)
    # When an old one exits (max_jobs) while the new ones boot, Then it is replaced under the serving config
    pool.on_exit(old[0].pid, exit_status(0))
    pool.top_up()
    serving = [h for h in pool.handles() if h.generation == 0]
    assert len(serving) == 2 and {h.index for h in serving} == {0, 1}
    # When one new worker is ready, one old one retires; when both are, all do and the new config serves
    ready(pool, new[0])
    pool.retire_replaced()
    assert sum(h.retiring for h in serving) == 1 and not pool.generation_ready()
    ready(pool, new[1])
    pool.retire_replaced()
    assert all(h.retiring for h in serving) and pool.generation_ready() and pool.serving == (new_cfg, 1)


def test_a_revert_stops_the_booting_new_workers_and_returns_what_served():
    pool = make_pool()
    started(pool)
    cfg = pool.cfg
    pool.configure(service(timeout=7), 1)
    pool.top_up()
    booting, = [h for h in pool.handles() if h.generation == 1]
    assert pool.revert() == (cfg, 0) and booting.killed_for == KillReason.SHUTDOWN


def test_the_pool_hands_its_own_descriptors_to_every_child_to_close():
    pool = make_pool()
    pool.inherit([7, 8])
    seen = []
    spawn = pool._spawn
    pool._spawn = lambda *args: seen.append(args[5]) or spawn(*args)
    pool.top_up()
    assert seen == [[7, 8]]


def test_a_cancel_whose_job_ended_since_the_turns_reading_kills_nothing():
    # Given a turn's reading that saw j1 running
    pool = make_pool(service(timeout=60))
    h, = started(pool)
    h.scoreboard.start("j1", "t1", 60.0)
    pool.look()
    pool.enforce_timeouts()
    # When j1 finishes while the broker is asked for kill requests, and one names it
    h.scoreboard.finish(True)
    pool.kill_cancelled("q", {"j1"})
    pool.end_look()
    # Then its worker lives: the kill is decided on a fresh read of that worker alone
    assert h.killed_for is None
