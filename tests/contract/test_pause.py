"""Pausing a queue, on every broker: a paused queue reserves nothing (for any
node, after a restart too) while other queues flow; acks go on; resume lets its
jobs flow again and wakes the consumers waiting for them."""
import select
import time

from mpqueue.brokers import Ack, open_broker
from mpqueue.core import envelope as jobmod
from tests.support import push_tags

Q, OTHER = "paused-q", "other-q"


def reserved_ids(broker, queue, count=10, consumer="c1", **idle):
    reserved, _ = broker.reserve(queue, consumer, count, 30.0, **idle)
    return [jobmod.job_id(r.envelope) for r in reserved]


def test_pause_and_resume_say_whether_they_changed_anything(broker):
    assert broker.paused([Q]) == set()
    assert broker.pause(Q) is True
    assert broker.pause(Q) is False           # paused already
    assert broker.paused([Q]) == {Q}
    assert broker.resume(Q) is True
    assert broker.resume(Q) is False          # running already
    assert broker.paused([Q]) == set()


def test_a_paused_queue_reserves_nothing_while_other_queues_flow(broker):
    # Given two queues with jobs waiting, one of them paused
    waiting = push_tags(broker, Q, "a", "b")
    other = push_tags(broker, OTHER, "x")
    broker.pause(Q)
    # When consumers reserve from both
    # Then the paused one gives nothing and keeps its jobs ready; the other flows
    assert reserved_ids(broker, Q) == []
    assert reserved_ids(broker, OTHER) == other
    assert broker.counts(Q)["ready"] == 2
    # And once resumed its jobs come, in order
    broker.resume(Q)
    assert reserved_ids(broker, Q) == waiting


def test_running_jobs_are_acked_while_paused(broker):
    # Given a job running when its queue is paused
    (job_id,) = push_tags(broker, Q, "a")
    push_tags(broker, Q, "b")
    (res,), _ = broker.reserve(Q, "c1", 1, 30.0)
    broker.pause(Q)
    # When it ends: its ack folded into the next reserve counts, and that reserve takes nothing
    reserved, _ = broker.reserve(Q, "c1", 1, 30.0, [Ack(job_id, res.token, "{}", 60)])
    assert reserved == []
    assert broker.find(Q, job_id)["state"] == "done"
    assert broker.counts(Q)["ready"] == 1 and broker.counts(Q)["running"] == 0


def test_due_delayed_jobs_become_ready_while_paused_but_do_not_run(broker):
    # Given a paused queue with a delayed job
    (job_id,) = push_tags(broker, Q, "later", delay=0.05)
    broker.pause(Q)
    time.sleep(0.1)      # ok: the job's due time must pass (50 ms, broker clock)
    # When a consumer looks after its due time: promoted, not reserved
    assert reserved_ids(broker, Q) == []
    assert broker.find(Q, job_id)["state"] == "ready"
    broker.resume(Q)
    assert reserved_ids(broker, Q) == [job_id]


def test_a_pause_survives_reopening_the_broker(broker):
    # Given a paused queue
    push_tags(broker, Q, "a")
    broker.pause(Q)
    # When another process (or the same after a restart) opens the broker
    again = open_broker(broker.url)
    try:
        # Then it sees the pause and honours it
        assert again.paused([Q, OTHER]) == {Q}
        assert reserved_ids(again, Q) == []
        assert again.resume(Q) is True
        assert len(reserved_ids(again, Q)) == 1
    finally:
        again.close()


def test_a_push_to_a_paused_queue_hands_nothing_to_an_idle_consumer(broker):
    # Given a consumer on the idle list (it joined before the pause), and one that
    # tries to join it after
    w1, w2 = broker.waiter(Q, "c1"), broker.waiter(Q, "c2")
    try:
        assert reserved_ids(broker, Q, consumer="c1", join_idle=True) == []
        broker.pause(Q)
        assert reserved_ids(broker, Q, consumer="c2", join_idle=True) == []
        # When a job is pushed
        (job_id,) = push_tags(broker, Q, "a")
        # Then nobody holds it: it waits, ready, for the resume
        assert broker.held(Q) == []
        assert broker.find(Q, job_id)["state"] == "ready"
        for w in (w1, w2):
            if select.select([w], [], [], 0.2)[0]:
                assert w.drain() == []         # a hint at most, never a job
        assert reserved_ids(broker, Q, consumer="c1", leave_idle=True, join_idle=True) == []
    finally:
        w1.close()
        w2.close()


def test_resume_wakes_the_waiting_consumers(broker):
    # Given a paused queue with a job waiting, and a consumer asleep on its waiter
    push_tags(broker, Q, "a")
    broker.pause(Q)
    waiter = broker.waiter(Q, "c1")
    try:
        assert reserved_ids(broker, Q, join_idle=True) == []
        waiter.drain()
        # When the queue is resumed
        broker.resume(Q)
        # Then the waiter is woken at once (not at the fallback) and the job is there
        assert select.select([waiter], [], [], 5)[0], "resume woke nobody"
        assert waiter.drain() == []
        assert len(reserved_ids(broker, Q, leave_idle=True)) == 1
    finally:
        waiter.close()


def test_paused_reads_many_queues_at_once(broker):
    # Given a dozen queues (on a Cluster their slots lie on every master), every third paused
    queues = [f"many{i}" for i in range(12)]
    for queue in queues[::3]:
        broker.pause(queue)
    # When they are read in one call, with a never-used queue and a repeated name
    # Then exactly the paused ones come back
    assert broker.paused(queues + ["never-used", queues[0]]) == set(queues[::3])
    assert broker.paused([]) == set()
