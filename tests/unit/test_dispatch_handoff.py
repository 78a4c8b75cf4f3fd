"""Dispatch mode's hand-off path, on a fake clock: while a worker waits, the
dispatcher is on the queue's idle list, so a push hands it the job over its
wake-up subscription; it confirms the job and sends it on without a reserve.
A hand-off nobody can take (its worker died, every ask was filled, the service
stops) goes back unrun."""
from __future__ import annotations

import contextlib

import pytest

from mpqueue import ipc
from mpqueue.brokers import Ack, Reserved
from mpqueue.supervisor import Supervisor, reload
from tests.unit.supervisor_fakes import Broker, Clock, Spawner, envelope, exit_status, service


class HandoffBroker(Broker):
    """The fake broker, plus what a hand-off needs: the idle-list flags of each
    reserve, confirm, and a waiter that hands over what the test queues on it."""

    def __init__(self):
        super().__init__()
        self.flags, self.waiters, self.handles = [], [], []

    def reserve(self, queue, consumer, count, lease, acks=(), *, leave_idle=False, join_idle=False, rate=None):
        self.flags.append((count, leave_idle, join_idle, [a.id for a in acks]))
        return super().reserve(queue, consumer, count, lease, acks)

    def confirm(self, queue, job_id, token, lease):
        self._call("confirm", job_id, token)

    @contextlib.contextmanager
    def receipts_held(self, queue):
        self._call("hold")
        yield
        self._call("let go", sum(len(h.control.sent) for h in self.handles))

    def waiter(self, queue, consumer=None):
        self.waiters.append(consumer)
        return HandingWaiter()


class HandingWaiter:
    def __init__(self):
        self.handed = []

    def fileno(self):
        return -1

    def drain(self):
        out, self.handed = self.handed, []
        return out

    def close(self):
        pass


@pytest.fixture
def sup(monkeypatch, tmp_path):
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPQUEUE_RUNTIME_DIR", str(tmp_path))
    clock = Clock()
    s = Supervisor(service(mode="dispatch", workers=2), clock=clock, spawn=Spawner(clock), reap=lambda: [])
    s.attach(HandoffBroker())
    s.reload_status = reload.ReloadStatus(s.cfg.name)
    return s


def idle_service(s):
    """Both workers booted and asked for a job each; the queue was empty, so the
    dispatcher's reserve put it on the idle list."""
    s.pool.top_up()
    handles = sorted(s.pool.workers.values(), key=lambda h: h.pid)
    s.broker.handles = handles
    for h in handles:
        h.report.inbox += [{"type": ipc.READY, "tasks": {}}, ipc.want_message(1)]
        s.pool.on_reports(h)
    s.pump([])
    holding, = s.pool.holdings.values()
    return handles, holding


def hand_over(holding, *jobs):
    """A push hands these (job id) to the dispatcher; returns what the loop sees readable."""
    holding.waiter.handed += [(f"h{j}", envelope(j)) for j in jobs]
    return [holding.waiter]


def test_an_idle_dispatcher_joins_the_idle_list_on_its_own_channel(sup):
    idle_service(sup)
    assert sup.broker.flags == [(2, False, True, [])]         # one reserve for both asks; nothing: joined
    assert sup.broker.waiters == [f"{sup.node_id}/dispatch"]   # the channel pushes hand its jobs on


def test_a_handed_job_is_confirmed_then_sent_on_with_no_reserve_before_it(sup):
    # Given an idle service whose dispatcher is on the idle list
    (a, b), holding = idle_service(sup)
    before = len(sup.broker.flags)
    # When a push hands it a job
    sup.broker.calls.clear()
    sup.pump(hand_over(holding, "j1"))
    # Then it is confirmed and sent to the worker that asked first, before any reserve;
    # the confirm reaches Redis only once the job is down the pipe (receipts held)
    assert sup.broker.calls[:3] == [("hold",), ("confirm", "j1", "hj1"), ("let go", 1)]
    assert [m["id"] for m in a.control.sent] == ["j1"] and b.control.sent == []
    assert a.control.sent[0]["token"] == "hj1"
    # and, with the other worker still waiting, the dispatcher goes back on the list at once
    assert sup.broker.flags[before:] == [(1, True, True, [])]
    assert holding.running(a, type("Slot", (), {"job_id": "j1"})).token == "hj1"


def test_the_ack_of_a_handed_job_rides_on_the_next_reserve(sup):
    (a, b), holding = idle_service(sup)
    sup.pump(hand_over(holding, "j1"))
    a.report.inbox += [ipc.done_message("j1", Ack("j1", "hj1", "", 0)), ipc.want_message(1)]
    sup.pool.on_reports(a)
    sup.pump([])
    assert sup.broker.flags[-1] == (2, True, True, ["j1"])


def test_a_handed_job_with_no_worker_free_goes_back_unrun(sup):
    # Given both workers busy with handed jobs (asks all filled)
    (a, b), holding = idle_service(sup)
    sup.pump(hand_over(holding, "j1", "j2"))
    assert [m["id"] for m in a.control.sent + b.control.sent] == ["j1", "j2"]
    # When a late hand-off comes (a push that found the dispatcher on the list before its last reserve)
    sup.broker.calls.clear()
    sup.pump(hand_over(holding, "j3"))
    # Then it is confirmed (the receiver took it) and released: attempt refunded, front of the queue
    assert [c for c in sup.broker.calls if c[0] in ("confirm", "release")] == [("confirm", "j3", "hj3"),
                                                                             ("release", "j3")]
    assert len(a.control.sent) == len(b.control.sent) == 1


def test_a_hand_off_arriving_after_its_worker_died_goes_back_unrun(sup):
    # Given an idle service with one worker waiting, the other killed meanwhile
    (a, b), holding = idle_service(sup)
    sup.pump(hand_over(holding, "j1"))                   # a is busy now
    sup.pool.on_exit(b.pid, exit_status(signal_number=9))
    sup.broker.calls.clear()
    # When a push hands over a job meant for the dead worker's ask
    sup.pump(hand_over(holding, "j2"))
    # Then no pipe carries it: it is released, unspent
    assert ("release", "j2") in sup.broker.calls and ("retry", "j2") not in sup.broker.calls
    assert [m["id"] for m in a.control.sent] == ["j1"] and b.control.sent == []


def test_a_hand_off_arriving_while_the_service_stops_goes_back_unrun(sup):
    (a, b), holding = idle_service(sup)
    sup.broker.calls.clear()
    sup.pool.pump(hand_over(holding, "j1"), True, sup.gate.record)
    assert ("release", "j1") in sup.broker.calls
    assert a.control.sent == b.control.sent == []


def test_a_handed_job_whose_pipe_write_fails_goes_back_and_the_ask_stands(sup, monkeypatch):
    # Given a worker whose control pipe is gone (it died; its exit not yet reaped)
    (a, b), holding = idle_service(sup)
    monkeypatch.setattr(a, "tell", lambda msg: False)
    sup.broker.calls.clear()
    sup.pump(hand_over(holding, "j1"))
    assert ("release", "j1") in sup.broker.calls
    assert holding.handed[a] == {} and holding.free[a] == 1


def test_a_stopping_dispatcher_leaves_the_idle_list_with_its_last_acks(sup):
    # Given an idle dispatcher on the idle list that owes an ack
    (a, b), holding = idle_service(sup)
    sup.pump(hand_over(holding, "j1"))
    a.report.inbox.append(ipc.done_message("j1", Ack("j1", "hj1", "", 0)))
    sup.pool.on_reports(a)
    # When the service finishes
    holding.finish()
    # Then one call both delivers the ack and takes it off the list: no push hands it a job again
    assert sup.broker.flags[-1] == (0, True, False, ["j1"])
    assert not holding.on_idle and holding.acks == []


def test_a_dispatcher_with_no_worker_waiting_never_joins_the_idle_list(sup):
    # Given workers that asked for nothing (about to recycle), and acks owed
    sup.pool.top_up()
    for h in sup.pool.workers.values():
        h.report.inbox.append({"type": ipc.READY, "tasks": {}})
        sup.pool.on_reports(h)
    holding, = sup.pool.holdings.values()
    holding.acks.append(Ack("j0", "t0", "", 0))
    holding.acks_since = sup.clock() - 1
    # When the acks go
    sup.pump([])
    # Then they go alone: a dispatcher on the idle list with nobody to run a job would only bounce it
    assert all(not join for _, _, join, _ in sup.broker.flags)
    assert ("confirm" not in sup.broker.names()) and holding.acks == []


def test_jobs_reserved_by_the_join_attempt_go_out_as_before(sup):
    # Given two jobs waiting when the workers first ask
    sup.broker.to_reserve = [Reserved("t1", envelope("j1"))]
    (a, b), holding = idle_service(sup)
    # Then the reserve found one: it went out, and the dispatcher did not join
    assert [m["id"] for m in a.control.sent] == ["j1"]
    assert sup.broker.flags[0] == (2, False, True, []) and not holding.on_idle
    # and the next turn, with b still waiting, tries again: nothing left, so it joins
    sup.pump([])
    assert sup.broker.flags[1] == (1, False, True, []) and holding.on_idle


def test_a_dispatcher_leaves_the_idle_list_as_soon_as_the_service_stops(sup):
    # Given an idle dispatcher on the idle list
    (a, b), holding = idle_service(sup)
    assert holding.on_idle
    # When the stop begins (its workers still draining), one turn takes it off the list
    sup.pool.pump([], True, sup.gate.record)
    assert sup.broker.flags[-1] == (0, True, False, []) and not holding.on_idle
    # and the turns after that make no call
    calls = len(sup.broker.calls)
    sup.pool.pump([], True, sup.gate.record)
    assert len(sup.broker.calls) == calls
