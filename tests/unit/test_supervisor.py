"""The supervisor's decisions, on a fake clock: no processes, no sleeping.

The Supervisor is the real one; only the edges are stand-ins: a clock the test
moves, a spawner that makes worker handles without forking, and a broker that
records the calls the decisions make (a small fake of pure bookkeeping; the
contract and e2e suites run the real brokers and processes)."""
from __future__ import annotations

import signal

import pytest

from mpqueue import ipc
from mpqueue.brokers import Held, Reserved
from mpqueue.core.config import QueueConfig, ServiceConfig
from mpqueue.supervisor import Supervisor, loop, pool, reload, timers
from mpqueue.supervisor.phase import Phase, PhaseError, move
from mpqueue.supervisor.signals import SIG_HANDLERS, STOP_SIGNALS
# Broker and Spawner are imported from here by other test files too.
from tests.unit.supervisor_fakes import Broker, Clock, Spawner, envelope, exit_status, service


@pytest.fixture
def sup(monkeypatch, tmp_path):
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPQUEUE_RUNTIME_DIR", str(tmp_path))

    def make(cfg=None):
        clock = Clock()
        s = Supervisor(cfg or service(), clock=clock, spawn=Spawner(clock), reap=lambda: [])
        s.attach(Broker())
        s.reload_status = reload.ReloadStatus(s.cfg.name)
        return s
    return make


def started(s):
    """Every configured worker spawned and reported ready, as start() would leave it."""
    s.pool.top_up()
    for h in list(s.pool.workers.values()):
        report_ready(s, h)
    return list(s.pool.workers.values())


def report_ready(s, h):
    # A worker's first words: READY, then (dispatch mode) its first loop turn asks
    # for a job per slot (worker/dispatched.py); a grab worker's holding ignores that.
    h.report.inbox.append({"type": ipc.READY, "tasks": {}})
    h.report.inbox.append(ipc.want_message(h.scoreboard.size))
    s.pool.on_reports(h)


# -- timeouts
def test_a_job_past_its_timeout_has_its_worker_killed_and_is_failed_as_timeout(sup):
    s = sup(service(timeout=5))
    h, = started(s)
    s.broker.held_jobs = [Held("j1", "t1", h.consumer, envelope())]
    h.scoreboard.start("j1", "t1", 5.0)
    s.clock.advance(4)
    s.pool.enforce_timeouts()
    assert h.killed_for is None
    s.clock.advance(1)
    s.pool.enforce_timeouts()
    assert h.killed_for == "timeout"
    assert ("fail", "j1") in s.broker.calls      # retry_on_timeout is off


def test_a_timed_out_job_is_retried_when_the_queue_says_so(sup):
    s = sup(service(timeout=5, retry_on_timeout=True))
    h, = started(s)
    s.broker.held_jobs = [Held("j1", "t1", h.consumer, envelope())]
    h.scoreboard.start("j1", "t1", 5.0)
    s.clock.advance(5)
    s.pool.enforce_timeouts()
    assert ("retry", "j1") in s.broker.calls


def test_the_loop_wakes_no_later_than_the_next_job_deadline(sup):
    s = sup(service(timeout=5))
    h, = started(s)
    s.maintain()                                  # every timer fired once
    h.scoreboard.start("j1", "t1", 0.25)
    assert s.next_timeout() == pytest.approx(0.25)


# -- stale workers
def test_an_idle_worker_silent_too_long_is_replaced_and_a_live_one_is_not(sup):
    s = sup()
    h, = started(s)
    s.clock.advance(pool.STALE_AFTER - 1)
    s.maintain()
    assert h.killed_for is None
    h.scoreboard.beat()                           # it shows life
    s.clock.advance(pool.STALE_AFTER - 1)
    s.maintain()
    assert h.killed_for is None
    s.clock.advance(2)
    s.maintain()
    assert h.killed_for == "stale"


# -- boot back-off
def test_a_worker_that_cannot_boot_is_restarted_after_doubling_delays(sup):
    s = sup()
    s.pool.top_up()
    delays = []
    for _ in range(4):
        h, = s.pool.workers.values()
        s.pool.on_exit(h.pid, exit_status(ipc.EXIT_BOOT_FAILED))
        waited = 0.0
        while not s.pool.workers:
            s.clock.advance(0.25)
            waited += 0.25
            s.pool.top_up()
        delays.append(waited)
    assert delays == [0.5, 1.0, 2.0, 4.0]


def test_boot_back_off_is_capped_and_cleared_by_a_ready_worker(sup):
    s = sup()
    s.pool.top_up()
    for _ in range(10):
        h, = s.pool.workers.values()
        s.pool.on_exit(h.pid, exit_status(ipc.EXIT_BOOT_FAILED))
        s.clock.advance(60)
        s.pool.top_up()
    assert s.pool.backoff.failed(("q", 0, 0)) == 60.0      # the 11th failure waits no longer than the cap
    s.pool.backoff.booted(("q", 0, 0))
    h, = s.pool.workers.values()
    report_ready(s, h)
    s.pool.on_exit(h.pid, exit_status(1))               # a crash after boot: restarted at once
    s.pool.top_up()
    assert len(s.pool.workers) == 1


# -- reaping dead nodes' leases
def test_expired_leases_are_reaped_every_half_lease(sup):
    s = sup(service(timeout=10))                    # lease 10 + 2: reap every 6 s
    started(s)
    s.maintain()
    assert s.broker.names().count("expired") == 1
    s.clock.advance(5)
    s.maintain()
    assert s.broker.names().count("expired") == 1
    s.clock.advance(1)
    s.maintain()
    assert s.broker.names().count("expired") == 2


# -- lease renewal: a lease ends only when its holder is gone
def test_the_leases_of_a_queue_with_a_busy_worker_are_renewed_every_quarter_lease(sup):
    s = sup(service(workers=2, timeout=10))          # lease 12 s: renew every 3 s
    busy, idle = started(s)
    s.maintain()
    assert "renew" not in s.broker.names()           # nothing runs: no call at all
    busy.scoreboard.start("j1", "t1", 10.0)
    s.clock.advance(3)
    s.maintain()
    assert s.broker.calls[-1] == ("renew", "q", sorted([busy.consumer, idle.consumer]), 12.0)
    s.clock.advance(2)
    s.maintain()
    assert s.broker.names().count("renew") == 1
    s.clock.advance(1)
    s.maintain()
    assert s.broker.names().count("renew") == 2


def test_a_kill_request_kills_the_worker_running_the_job_and_settles_it_at_once(sup):
    s = sup(service(workers=2, timeout=60))
    busy, idle = started(s)
    s.maintain()
    assert "cancel_requests" not in s.broker.names()     # nothing runs: no look at all
    s.broker.held_jobs = [Held("j1", "t1", busy.consumer, envelope())]
    busy.scoreboard.start("j1", "t1", 60.0)
    s.broker.cancels = {"j1": "ask"}
    s.clock.advance(1)
    s.maintain()
    assert ("cancel_requests", "q") in s.broker.calls and busy.killed_for is None    # asked only: the task's business
    s.broker.cancels = {"j1": "kill"}
    s.clock.advance(1)
    s.maintain()
    # the broker's settle (a retry here) ends it as cancelled, since the request stands
    assert busy.killed_for == "cancelled" and idle.killed_for is None
    assert ("retry", "j1") in s.broker.calls or ("fail", "j1") in s.broker.calls


def test_long_timeouts_still_reap_every_15_seconds(sup):
    s = sup(service(timeout=3600))
    assert timers.reap_every(s.cfg, loop.REAP_EVERY) == loop.REAP_EVERY == 15.0


# -- stopping
def test_a_graceful_stop_asks_every_worker_then_kills_at_the_deadline(sup):
    s = sup(service(workers=2))
    handles = started(s)
    s.graceful_stop()
    assert all(h.control.sent == [{"type": ipc.STOP}] for h in handles)
    s.clock.advance(29)
    s.stop_step()
    assert all(h.killed_for is None for h in handles)
    s.clock.advance(1)
    s.stop_step()
    assert all(h.killed_for == "shutdown" for h in handles)


def test_a_clean_stop_removes_its_own_node_record_as_its_last_broker_call(sup):
    # Given a service whose worker held a job when the stop began
    s = sup()
    h, = started(s)
    s.broker.held_jobs = [Held("j1", "t1", h.consumer, envelope())]
    h.scoreboard.start("j1", "t1", 120.0)
    s.graceful_stop()
    # When the worker is gone and the supervisor finishes
    s.clock.advance(30)
    s.stop_step()
    s.pool.on_exit(h.pid, exit_status(signal_number=9))
    s.finish()
    # Then the job went back first, and the last broker call removed this node's record
    assert ("release", "j1") in s.broker.calls
    assert s.broker.calls[-1] == ("forget_node", s.node_id)


def test_a_broker_down_at_the_end_of_a_stop_still_stops_cleanly(sup):
    # Given a service stopping while its broker is unreachable
    s = sup()
    h, = started(s)
    s.graceful_stop()
    s.pool.on_exit(h.pid, exit_status(code=0))
    s.broker.down = True
    # When it finishes, Then it still exits cleanly (the record expires at its ttl)
    assert s.finish() == ipc.EXIT_OK
    assert s.broker.names()[-1] == "forget_node"


def test_a_worker_killed_at_the_stop_deadline_hands_its_job_back_unspent(sup):
    s = sup()
    h, = started(s)
    s.broker.held_jobs = [Held("j1", "t1", h.consumer, envelope())]
    h.scoreboard.start("j1", "t1", 120.0)
    s.graceful_stop()
    s.clock.advance(30)
    s.stop_step()
    s.pool.on_exit(h.pid, exit_status(signal_number=9))
    assert ("release", "j1") in s.broker.calls
    assert not {"retry", "fail"} & set(s.broker.names())


def test_a_crashed_worker_spends_the_attempt_of_the_job_it_ran_and_hands_back_the_rest(sup):
    s = sup()
    h, = started(s)
    s.broker.held_jobs = [Held("j1", "b.1", h.consumer, envelope("j1")), Held("j2", "b.2", h.consumer, envelope("j2"))]
    h.scoreboard.start("j1", "b.1", 120.0)
    s.pool.on_exit(h.pid, exit_status(signal_number=9))
    assert ("retry", "j1") in s.broker.calls and ("release", "j2") in s.broker.calls


# -- reload
def write_yaml(tmp_path, workers):
    path = tmp_path / "svc.yaml"
    path.write_text(f"name: svc\nbroker: redis://127.0.0.1:1/0\nimports: [tasks]\nlease_grace: 2\n"
                    f"queues: {{q: {{workers: {workers}}}}}\n")
    return path


def reloadable(sup, tmp_path, workers):
    from mpqueue.core.config import load_config
    return sup(load_config(write_yaml(tmp_path, workers)))


def test_a_reload_retires_old_workers_only_as_new_ones_become_ready(sup, tmp_path):
    s = reloadable(sup, tmp_path, workers=2)
    old = started(s)
    s.begin_reload()
    s.maintain()
    new = [h for h in s.pool.workers.values() if h.generation == 1]
    assert len(new) == 2 and not any(h.retiring for h in old)
    report_ready(s, new[0])
    s.maintain()
    assert sum(h.retiring for h in old) == 1 and s.reloading
    report_ready(s, new[1])
    s.maintain()
    assert all(h.retiring for h in old) and not s.reloading
    assert reload.ReloadStatus.read("svc")["state"] == "done"


def test_a_stop_during_a_reload_ends_the_reload_as_failed_so_its_caller_hears_at_once(sup, tmp_path):
    # Given a reload whose new workers are still booting
    s = reloadable(sup, tmp_path, workers=1)
    started(s)
    s.begin_reload()
    s.maintain()
    assert reload.ReloadStatus.read("svc")["state"] == "running"
    # When a stop arrives
    s.graceful_stop()
    # Then the reload's status says it failed, and why
    status = reload.ReloadStatus.read("svc")
    assert status["state"] == "failed" and "stopping" in status["error"]


def test_a_reload_whose_workers_cannot_boot_fails_and_keeps_the_old_ones(sup, tmp_path):
    s = reloadable(sup, tmp_path, workers=1)
    old, = started(s)
    s.begin_reload()
    s.maintain()
    new, = [h for h in s.pool.workers.values() if h.generation == 1]
    new.report.inbox.append({"type": ipc.BOOT_FAILED, "error": "ImportError: nope"})
    s.pool.on_exit(new.pid, exit_status(ipc.EXIT_BOOT_FAILED))
    status = reload.ReloadStatus.read("svc")
    assert status["state"] == "failed" and "ImportError: nope" in status["error"]
    assert not old.retiring and not s.reloading


def boot_fails(s, h, error="ImportError: nope"):
    h.report.inbox.append({"type": ipc.BOOT_FAILED, "error": error})
    s.pool.on_exit(h.pid, exit_status(ipc.EXIT_BOOT_FAILED))


def test_after_a_failed_reload_an_old_worker_that_exits_is_replaced_under_the_old_configuration(sup, tmp_path):
    s = reloadable(sup, tmp_path, workers=1)
    old, = started(s)
    write_yaml(tmp_path, workers=2)
    s.begin_reload()
    s.maintain()
    new = [h for h in s.pool.workers.values() if h.generation == 1]
    assert len(new) == 2
    boot_fails(s, new[0])
    # The reload failed: back to the old configuration, the other new worker stopped
    assert not s.reloading and s.cfg.queues["q"].workers == 1 and s.pool.generation == 0
    assert new[1].killed_for == "shutdown"
    s.pool.on_exit(new[1].pid, exit_status(signal_number=9))
    # When the old worker exits (max_jobs), a worker of the old configuration replaces it at once
    s.pool.on_exit(old.pid, exit_status(0))
    s.maintain()
    replacement, = s.pool.workers.values()
    assert replacement.generation == 0 and replacement.index == 0
    assert [h.generation for h in s._spawn.handles[-1:]] == [0]


def test_while_new_workers_boot_an_old_worker_that_exits_is_replaced(sup, tmp_path):
    s = reloadable(sup, tmp_path, workers=2)
    old = started(s)
    s.begin_reload()
    s.maintain()
    booting = [h for h in s.pool.workers.values() if h.generation == 1]
    s.pool.on_exit(old[0].pid, exit_status(0))         # max_jobs, mid-reload
    s.maintain()
    serving = [h for h in s.pool.workers.values() if h.generation == 0]
    assert len(serving) == 2 and {h.index for h in serving} == {0, 1}
    # As the new ones become ready, the old ones retire, replacements included, and none comes back
    for h in booting:
        report_ready(s, h)
    s.maintain()
    assert all(h.retiring for h in serving) and not s.reloading
    for h in serving:
        s.pool.on_exit(h.pid, exit_status(0))
    s.maintain()
    assert sorted(h.generation for h in s.pool.workers.values()) == [1, 1]


def test_a_reload_that_fails_on_one_queue_reverts_the_queue_that_had_switched(sup, tmp_path):
    from mpqueue.core.config import load_config
    path = tmp_path / "svc.yaml"
    base = "name: svc\nbroker: redis://127.0.0.1:1/0\nimports: [tasks]\nlease_grace: 2\n"
    path.write_text(base + "queues: {a: {workers: 1}, b: {workers: 1}}\n")
    s = sup(load_config(path))
    old = {h.queue: h for h in started(s)}
    path.write_text(base + "queues: {a: {workers: 1, timeout: 7}, b: {workers: 1, timeout: 7}}\n")
    s.begin_reload()
    s.maintain()
    new = {h.queue: h for h in s.pool.workers.values() if h.generation == 1}
    report_ready(s, new["a"])
    s.maintain()
    assert old["a"].retiring and not old["b"].retiring
    boot_fails(s, new["b"])
    assert s.cfg.queues["a"].timeout != 7                   # the old configuration, all of it
    s.pool.on_exit(old["a"].pid, exit_status(0))
    s.maintain()
    again, = [h for h in s.pool.workers.values() if h.queue == "a" and h.generation == 0]
    assert not new["a"].retiring                            # serves until the old configuration's is ready
    report_ready(s, again)
    s.maintain()
    assert new["a"].retiring and not old["b"].retiring


def test_an_invalid_yaml_on_reload_changes_nothing(sup, tmp_path):
    s = reloadable(sup, tmp_path, workers=1)
    started(s)
    (tmp_path / "svc.yaml").write_text("queues: [not, a, mapping]\n")
    s.begin_reload()
    assert s.generation == 0 and reload.ReloadStatus.read("svc")["state"] == "failed"


# -- broker-down gating
def test_after_a_failed_call_the_loop_makes_no_routine_call_until_the_retry_time(sup):
    s = sup(service(timeout=1))                      # lease 1 + 2: reap every 1.5 s
    started(s)
    s.broker.down = True
    s.maintain()                                     # reaping fails: the gate shuts for 2 s
    assert s.broker.names() == ["expired"] and not s.gate.ok
    s.clock.advance(1.5)
    s.maintain()                                     # reaping is due, but the gate is shut
    assert s.broker.names() == ["expired"]
    s.broker.down = False
    s.clock.advance(1.5)
    s.maintain()                                     # due again, the gate open: the call goes through
    assert s.broker.names().count("expired") == 2 and s.gate.ok
    assert s.status_line().endswith("broker ok")


def test_paused_queues_are_named_at_the_end_of_the_status_line_read_with_the_ready_count(sup):
    # Given a service whose STATUS= is read by systemd, one of its queues paused
    s = sup(service())
    sent = []
    s.notifier._sock = type("Sock", (), {"notify": lambda self, text: sent.append(text)})()
    s.broker.paused_queues = {"q", "elsewhere"}
    started(s)
    # When the count timer fires: one paused() read for all queues, beside the ready counts
    s.maintain()
    assert s.broker.names().count("paused") == 1 and "ready_count" in s.broker.names()
    # Then the line names the service's paused queues, last
    assert s.status_line().endswith("broker ok; paused: q")
    assert sent[-1].endswith("; paused: q")
    # And once resumed, at the next count, the mark is gone
    s.broker.paused_queues = set()
    s.clock.advance(loop.COUNT_EVERY)
    s.maintain()
    assert s.status_line().endswith("broker ok")


def test_a_down_broker_shows_in_the_status_line(sup):
    s = sup()
    started(s)
    s.broker.down = True
    s.maintain()
    assert s.status_line().endswith("broker unreachable")


# -- dispatch mode: the supervisor holds the jobs it hands out
def test_a_dispatched_job_of_a_crashed_worker_is_retried_from_what_the_supervisor_handed(sup):
    s = sup(service(mode="dispatch"))
    h, = started(s)
    env = envelope("j1")                             # once: an envelope carries the time it was made
    s.broker.to_reserve = [Reserved("t1", env)]
    s.pump([])
    assert h.control.sent == [{"type": ipc.JOB, "id": "j1", "token": "t1", "envelope": env}]
    h.scoreboard.start("j1", "t1", 60.0)             # the worker started it
    s.pool.on_exit(h.pid, exit_status(signal_number=9))
    assert ("retry", "j1") in s.broker.calls
    assert "held" not in s.broker.names()            # no broker scan: it knew


def test_dispatched_jobs_of_a_crashed_concurrent_worker_spend_only_what_ran(sup):
    s = sup(service(mode="dispatch", concurrency=3))
    h, = started(s)
    s.broker.to_reserve = [Reserved(f"t{i}", envelope(f"j{i}")) for i in (1, 2, 3)]
    s.pump([])
    assert [m["id"] for m in h.control.sent] == ["j1", "j2", "j3"]     # one reserve filled its three slots
    assert ("reserve", 3) in s.broker.calls
    h.scoreboard.start("j1", "t1", 60.0, slot=0)
    h.scoreboard.start("j2", "t2", 60.0, slot=1)     # j3 was sent, never started
    s.pool.on_exit(h.pid, exit_status(signal_number=9))
    settled = [c for c in s.broker.calls if c[0] in ("retry", "release")]
    assert settled == [("release", "j3"), ("retry", "j2"), ("retry", "j1")]


def test_a_concurrent_worker_past_one_jobs_timeout_is_killed_and_its_other_jobs_go_back_unspent(sup):
    s = sup(service(concurrency=4))
    h, = started(s)
    s.broker.held_jobs = [Held(f"j{i}", f"b.{i}", h.consumer, envelope(f"j{i}")) for i in (1, 2, 3)]
    h.scoreboard.start("j1", "b.1", 5.0, slot=0)
    h.scoreboard.start("j2", "b.2", 60.0, slot=1)
    s.clock.advance(5.0)
    s.maintain()
    assert h.killed_for == "timeout"
    s.pool.on_exit(h.pid, exit_status(signal_number=9))
    settled = [c for c in s.broker.calls if c[0] in ("retry", "release", "fail")]
    assert settled[0] == ("fail", "j1")              # the overdue one: failed as timeout (no retry_on_timeout)
    assert sorted(settled[1:]) == [("release", "j2"), ("release", "j3")]     # running or not, unspent


def test_a_dispatcher_sends_a_worker_no_more_jobs_than_it_asked_for(sup):
    # Given a dispatch worker that asked for 1 job (its first turn) and 5 jobs waiting
    s = sup(service(mode="dispatch"))
    h, = started(s)
    s.broker.to_reserve = [Reserved(f"t{i}", envelope(f"j{i}")) for i in range(5)]
    s.pump([])
    assert [m["id"] for m in h.control.sent] == ["j0"] and ("reserve", 1) in s.broker.calls
    # When it ends that job without asking for more, nothing more is sent
    h.report.inbox.append(ipc.done_message("j0"))
    s.pool.on_reports(h)
    s.clock.advance(1.0)
    s.pump([])
    assert len(h.control.sent) == 1
    # And when it asks for 3 (recent jobs were short), one reserve brings 3
    h.report.inbox.append(ipc.want_message(3))
    s.pool.on_reports(h)
    s.pump([])
    assert [m["id"] for m in h.control.sent] == ["j0", "j1", "j2", "j3"] and ("reserve", 3) in s.broker.calls


def test_a_dispatchers_acks_wait_briefly_for_a_reserve_to_ride_on(sup):
    from mpqueue.brokers import Ack
    from mpqueue.supervisor.dispatcher import ACK_DELAY
    # Given a dispatch worker running the 2 jobs it asked for
    s = sup(service(mode="dispatch"))
    h, = started(s)
    h.report.inbox.append(ipc.want_message(1))
    s.pool.on_reports(h)
    s.broker.to_reserve = [Reserved(f"t{i}", envelope(f"j{i}")) for i in range(2)]
    s.pump([])
    holding, = s.pool.holdings.values()
    reserves = s.broker.names().count("reserve")
    # When the first ends with its ack, no call is made for the ack alone at once
    h.report.inbox.append(ipc.done_message("j0", Ack("j0", "t0", "", 0)))
    s.pool.on_reports(h)
    s.pump([])
    assert s.broker.names().count("reserve") == reserves and holding.timeout(s.clock()) == pytest.approx(ACK_DELAY)
    # And when the worker asks again before ACK_DELAY, the ack rides on that reserve
    h.report.inbox.append(ipc.want_message(2))
    s.pool.on_reports(h)
    s.pump([])
    assert s.broker.names().count("reserve") == reserves + 1 and holding.acks == []
    # Then an ack with no reserve coming goes alone once ACK_DELAY has passed
    h.report.inbox.append(ipc.done_message("j1", Ack("j1", "t1", "", 0)))
    s.pool.on_reports(h)
    s.broker.to_reserve = []
    holding.wanted = False
    holding.due_at = s.clock() + 60
    s.pump([])
    assert holding.acks
    s.clock.advance(ACK_DELAY)
    s.pump([])
    assert holding.acks == []


def test_a_dispatcher_whose_reserve_fails_backs_off_and_shuts_the_gate(sup):
    s = sup(service(mode="dispatch"))
    started(s)
    s.broker.down = True
    s.pump([])
    assert not s.gate.ok
    holding, = s.pool.holdings.values()
    assert holding.suspect
    # Its idle worker still wants work, yet the loop may sleep, and the next turns
    # before the back-off ends do not call the broker: no spin while Redis is down.
    tries = lambda: s.broker.names().count("held") + s.broker.names().count("reserve")  # noqa: E731
    gaps, before = [], tries()
    for _ in range(8):
        wait = holding.timeout(s.clock())
        assert wait > 0
        s.pump([])                                # a turn woken early: nothing sent
        assert tries() == before
        gaps.append(round(wait, 3))
        s.clock.advance(wait)
        s.pump([])
        assert tries() == before + 1
        before = tries()
    assert gaps == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]      # doubling, capped
    s.broker.down = False
    s.clock.advance(holding.timeout(s.clock()))
    s.pump([])
    assert s.broker.names()[-2:] == ["held", "reserve"]       # reconciled, then reserved
    assert s.gate.ok and holding.retry_at is None


def test_every_worker_handle_belongs_to_its_modes_holding(sup):
    s = sup(ServiceConfig(name="svc", broker="redis://h/0", imports=("t",),
                          queues={"a": QueueConfig("a", workers=1), "b": QueueConfig("b", workers=1, mode="dispatch")}))
    s.pool.top_up()
    assert {(h.queue, h.holding.mode) for h in s.pool.workers.values()} == {("a", "grab"), ("b", "dispatch")}


def test_a_reload_onto_a_world_readable_yaml_with_a_password_fails_as_run_would_refuse_it(sup, tmp_path):
    # Given a running service whose YAML is then given a password and made readable by everyone
    s = reloadable(sup, tmp_path, workers=1)
    started(s)
    path = tmp_path / "svc.yaml"
    path.write_text(path.read_text().replace("redis://127.0.0.1:1/0", "redis://:s3cret@127.0.0.1:1/0"))
    path.chmod(0o644)
    # When it is reloaded
    s.begin_reload()
    # Then the reload fails with run's line, and the running configuration keeps serving
    status = reload.ReloadStatus.read("svc")
    assert status["state"] == "failed" and "the URL holds a password but the file is readable by other users " \
        "(mode 0644)" in status["error"] and "s3cret" not in status["error"]
    assert s.generation == 0 and s.cfg.broker == "redis://127.0.0.1:1/0"


# -- phases and signals (signals.py, phase.py)
def reaping(s):
    """Let quick_stop reap: every worker killed is dead at the next reap."""
    s._reap = lambda: [(h.pid, exit_status(signal_number=9)) for h in s.pool.handles() if h.killed_for]
    return s


def test_a_supervisor_starts_in_the_starting_phase_and_serves_again_once_a_reload_completes(sup, tmp_path):
    s = reloadable(sup, tmp_path, workers=1)
    assert s.phase == Phase.STARTING and not s.stopping and not s.reloading
    started(s)
    s.enter(Phase.SERVING)
    s.handle_signal(signal.SIGHUP)
    assert s.phase == Phase.RELOADING and s.reloading
    s.maintain()
    new, = [h for h in s.pool.workers.values() if h.generation == 1]
    report_ready(s, new)
    s.maintain()
    assert s.phase == Phase.SERVING


def test_a_term_drains_and_a_second_term_during_the_drain_stops_now(sup):
    s = reaping(sup(service(workers=2)))
    handles = started(s)
    s.handle_signal(signal.SIGTERM)
    assert s.phase == Phase.DRAINING and s.stopping
    assert all(h.control.sent == [{"type": ipc.STOP}] for h in handles)
    s.handle_signal(signal.SIGTERM)
    assert s.phase == Phase.QUICK and s.pool.handles() == []
    assert all(h.killed_for == "shutdown" for h in handles)


def test_an_int_is_a_term(sup):
    s = reaping(sup())
    started(s)
    s.handle_signal(signal.SIGINT)
    assert s.phase == Phase.DRAINING
    s.handle_signal(signal.SIGINT)
    assert s.phase == Phase.QUICK


def test_a_quit_stops_now_whatever_the_phase(sup):
    s = reaping(sup())
    h, = started(s)
    s.handle_signal(signal.SIGQUIT)
    assert s.phase == Phase.QUICK and h.killed_for == "shutdown" and s.pool.handles() == []


def test_a_hup_during_a_drain_is_ignored_and_a_chld_only_wakes_the_loop(sup, tmp_path):
    s = reloadable(sup, tmp_path, workers=1)
    started(s)
    s.handle_signal(signal.SIGCHLD)
    assert s.phase == Phase.STARTING
    s.handle_signal(signal.SIGTERM)
    s.handle_signal(signal.SIGHUP)
    assert s.phase == Phase.DRAINING and s.generation == 0
    assert reload.ReloadStatus.read("svc")["state"] == "none"


def test_a_failed_reload_leaves_the_supervisor_serving(sup, tmp_path):
    s = reloadable(sup, tmp_path, workers=1)
    started(s)
    s.enter(Phase.SERVING)
    (tmp_path / "svc.yaml").write_text("queues: [not, a, mapping]\n")
    s.handle_signal(signal.SIGHUP)
    assert s.phase == Phase.SERVING and reload.ReloadStatus.read("svc")["state"] == "failed"


def test_nothing_leaves_a_stop_but_a_quicker_stop():
    for stop in (Phase.DRAINING, Phase.QUICK):
        for other in (Phase.STARTING, Phase.SERVING, Phase.RELOADING):
            with pytest.raises(PhaseError):
                move(stop, other)
    assert move(Phase.DRAINING, Phase.QUICK) == Phase.QUICK


def test_every_signal_the_supervisor_catches_has_its_own_handler():
    assert set(SIG_HANDLERS) == set(STOP_SIGNALS) == {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                                                       signal.SIGHUP, signal.SIGCHLD}
    assert all(callable(getattr(Supervisor, name)) for name in SIG_HANDLERS.values())


def test_a_loop_turn_reads_each_workers_scoreboard_once(sup):
    # Given busy workers, and a turn on which every duty is due
    s = sup(service(workers=2, timeout=60))
    handles = started(s)
    handles[0].scoreboard.start("j1", "t1", 60.0)
    reads = {h: 0 for h in handles}
    for h in handles:
        def counted(h=h, read=h.scoreboard.read):
            reads[h] += 1
            return read()
        h.scoreboard.read = counted
    # When the loop judges the turn (timeouts, leases, cancels, heartbeat, status) and sets its next wait
    s.judge()
    # Then each scoreboard was read once
    assert "renew" in s.broker.names() and "heartbeat" in s.broker.names()
    assert list(reads.values()) == [1, 1]
