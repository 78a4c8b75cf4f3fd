"""The worker's two sources of jobs (worker/grab.py, worker/dispatched.py), on a
fake clock, a fake broker and a control line with no pipe. One class of
behaviours every source must have runs against both (huey's mixin style);
then each source's own. No processes."""
from __future__ import annotations

import pytest

from mpqueue.brokers.base import Ack
from mpqueue.core import envelope as jobmod
from mpqueue.worker.dispatched import DispatchedSource
from mpqueue.worker.grab import GrabSource

from .worker_fakes import Clock, FakeBroker, FakeControl, envelope

Q, ME = "q", "node/1"


def ack_of(unit) -> Ack:
    return Ack(jobmod.job_id(unit.envelope), unit.token, "", 0)


class SourceBehaviours:
    """What the worker loop relies on from any source. A subclass says how to
    offer jobs to its source and where a finished job's ack ends up."""

    def setup_method(self):
        self.clock = Clock()
        self.broker = FakeBroker()
        self.control = FakeControl(self.clock)
        self.source = self.make()

    def units(self, free=16):
        # Given jobs on offer, take them as the loop does: fill, then take.
        self.source.fill(free, free, set)
        return self.source.take(free, self.clock())

    def test_jobs_are_taken_oldest_first_and_no_more_than_the_free_slots(self):
        ids = self.offer(3)
        first = self.units(free=2)
        assert [jobmod.job_id(u.envelope) for u in first] == ids[:2]
        assert [jobmod.job_id(u.envelope) for u in self.units(free=2)] == ids[2:]

    def test_a_finished_jobs_ack_reaches_the_one_who_holds_it(self):
        # Given a job taken and run
        (unit,) = self.units(free=1)
        # When it ends with its ack, and the loop turns once more
        unit.done(ack_of(unit))
        self.source.fill(1, 1, set)
        self.source.deliver()
        # Then its ack was delivered
        assert self.settled() == [jobmod.job_id(unit.envelope)]

    def test_a_job_just_taken_starts_without_a_broker_call(self):
        (unit,) = self.units(free=1)
        assert unit.claim(self.clock()) and self.broker.extended == []

    def test_waiting_with_nothing_to_take_sleeps_no_longer_than_asked(self):
        self.source.fill(1, 1, set)
        self.source.wait(0.5, [])
        assert 0 < self.control.waits[-1] <= 0.5


class TestGrabSource(SourceBehaviours):
    def make(self):
        return GrabSource(self.broker, Q, ME, 60.0, self.control, shutdown_timeout=5.0, clock=self.clock)

    def offer(self, n):
        return self.broker.push(n)

    def units(self, free=16):
        if not self.broker.ready and not self.source.handed:
            self.offer(1)
        return super().units(free)

    def settled(self):
        return self.broker.acked

    def test_acks_owed_are_folded_into_the_next_reserve(self):
        self.offer(2)
        (unit,) = self.units(free=1)
        unit.done(ack_of(unit))
        self.source.take(1, self.clock())
        self.source.fill(1, 1, set)
        assert self.broker.reserves[-1]["acks"] == [jobmod.job_id(unit.envelope)]

    def test_a_job_that_waited_over_a_second_in_our_hands_gets_its_lease_stretched_first(self):
        (unit,) = self.units(free=1)
        self.clock.advance(1.5)
        assert unit.claim(self.clock())
        assert self.broker.extended == [jobmod.job_id(unit.envelope)]

    def test_a_job_whose_lease_ran_out_while_it_waited_is_not_started(self):
        (unit,) = self.units(free=1)
        self.broker.held_jobs.clear()          # its lease ran out; someone else has it
        self.clock.advance(1.5)
        assert not unit.claim(self.clock())

    def test_an_empty_queue_subscribes_then_rechecks_then_waits_on_the_idle_list(self):
        assert self.source.fill(1, 1, set) is True           # subscribed: re-check at once
        assert self.source.fill(1, 1, set) is False
        assert self.broker.reserves[-1]["join_idle"] and self.source.idle
        # No reserve again until a hint or the fallback
        self.source.fill(1, 1, set)
        assert len(self.broker.reserves) == 2

    def test_a_hand_off_on_the_idle_list_is_confirmed_and_taken(self):
        self.source.fill(1, 1, set)
        self.source.fill(1, 1, set)
        job_id = self.broker.hand_off(ME)
        self.control.readable = [self.source.waiter]
        self.source.wait(1.0, [])
        (unit,) = self.source.take(1, self.clock())
        assert jobmod.job_id(unit.envelope) == job_id and self.broker.confirmed == [job_id]

    def test_the_broker_down_backs_off_doubling_each_second_up_to_five_seconds(self):
        self.broker.down = True
        waits = []
        for _ in range(80):
            self.source.fill(1, 1, set)
            self.source.wait(60.0, [])
            waits.append(round(self.control.waits[-1], 3))
        assert waits[0] == 0.05 and 0.1 in waits and 0.2 in waits
        assert max(waits) == 5.0 and waits == sorted(waits) and len(self.broker.reserves) == 0

    def test_after_an_outage_jobs_held_in_our_name_go_back_but_not_acks_owed_or_running_jobs(self):
        # Given three jobs reserved for us (one finished, its ack owed; one running; one in hand)
        done_id, running_id, lost_id = self.offer(3)
        done, running, _ = self.units(free=3)
        done.done(ack_of(done))
        # When the broker goes down and comes back
        self.broker.down = True
        self.source.fill(1, 1, set)
        self.broker.down = False
        self.clock.advance(10)
        self.source.fill(1, 1, lambda: {running_id})
        # Then only the job in hand (never started) was handed back; the ack went with the reserve
        assert self.broker.released == [lost_id]
        assert done_id in self.broker.acked and running_id in self.broker.held_jobs

    def test_a_hand_off_arriving_after_the_reclaim_released_it_is_void(self):
        self.source.fill(1, 1, set)
        self.source.fill(1, 1, set)
        job_id = self.broker.hand_off(ME)            # handed while we could not hear it
        late_token = self.broker.held_jobs[job_id].token
        waiter = self.source.waiter
        self.clock.advance(61)                       # the fallback: reserve again
        self.broker.down = True
        self.source.fill(1, 1, set)                  # the outage drops the waiter
        self.broker.down = False
        self.clock.advance(10)
        self.source.waiter = waiter                  # the late message is still readable
        self.source.fill(1, 1, set)                  # reclaim hands the job back
        assert self.broker.released == [job_id]
        self.source.collect_handed()
        assert late_token not in [u.token for u in self.source.handed] and job_id not in self.broker.confirmed

    def test_on_the_way_out_jobs_in_hand_go_back_last_first_keeping_their_order(self):
        ids = self.offer(3)
        self.source.fill(3, 3, set)
        self.source.hand_back()
        assert self.broker.released == ids[::-1]
        assert [jobmod.job_id(e) for e in self.broker.ready] == ids

    def test_on_the_way_out_the_hand_back_gives_up_at_the_shutdown_timeout(self):
        self.offer(2)
        self.source.fill(2, 2, set)
        self.broker.down = True
        self.source.hand_back()
        assert self.clock() - 1000.0 == pytest.approx(5.0, abs=5.0) and self.source.handed


class TestDispatchedSource(SourceBehaviours):
    def make(self):
        return DispatchedSource(self.control, self.control)

    def offer(self, n):
        ids = []
        for _ in range(n):
            job_id, env = envelope()
            self.control.inbox.append({"type": "job", "id": job_id, "token": f"t-{job_id}", "envelope": env})
            self.control.received += 1
            ids.append(job_id)
        return ids

    def units(self, free=16):
        if not self.control.inbox:
            self.offer(1)
        return super().units(free)

    def settled(self):
        return [m["id"] for m in self.control.reports if m.get("token")]

    def asked(self):
        return [m["n"] for m in self.control.reports if m["type"] == "want"]

    def test_a_failed_job_is_reported_done_without_an_ack(self):
        (unit,) = self.units(free=1)
        unit.done(None)
        assert [m for m in self.control.reports if m["type"] == "done"] == \
            [{"type": "done", "id": jobmod.job_id(unit.envelope)}]

    def test_it_asks_the_supervisor_only_for_jobs_not_already_asked_for(self):
        # Given a worker that wants 4 jobs in hand and has asked for them
        self.source.fill(4, 1, set)
        assert self.asked() == [4]
        # When 3 arrive and it still wants 4 more, only 3 more are asked for (1 is on its way)
        self.offer(3)
        self.source.fill(4, 1, set)
        assert self.asked() == [4, 3]
        # And wanting no more than is on its way asks nothing
        self.source.fill(4, 1, set)
        self.source.fill(0, 1, set)
        assert self.asked() == [4, 3]

    def test_a_dispatched_job_never_asks_the_broker_to_stretch_its_lease(self):
        (unit,) = self.units(free=1)
        self.clock.advance(30)
        assert unit.claim(self.clock()) and self.broker.extended == []
