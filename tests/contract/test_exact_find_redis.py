"""The Redis broker finds and cancels one job without reading the queue (issue #27
items 1 and 9): find.lua and cancel.lua go through the index of waiting jobs
(`where`, see lua/_keys.lua), so a job at the tail of a deep queue costs what one
at the head does, no command proportional to the depth runs, and a cancelled job
deep in a list is dropped by the reserve that reaches it. Jobs an older release
pushed (no index entry) are still found, by the old scan. Costs are measured in
bench/scale.py; here, which commands ran (INFO commandstats)."""
import json

import pytest

from mpqueue.brokers import Ack, PushItem, open_broker
from mpqueue.core import envelope as jobmod
from mpqueue.producer.client import Client

Q = "deep"
DEPTH = 20_000


@pytest.fixture
def broker(redis_url):
    b = open_broker(redis_url)
    yield b
    b.close()


def fill(broker, n, priority=0, delay=0.0):
    ids = []
    for start in range(0, n, 5000):
        items = [jobmod.encode("t:f", [i], priority=priority) for i in range(start, min(n, start + 5000))]
        broker.push(Q, [PushItem(env, priority, delay) for _, env in items])
        ids += [job_id for job_id, _ in items]
    return ids


def scans(rdb) -> int:
    """How many list-reading or list-searching commands the server has run so far."""
    stats = rdb.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("lrange", "lrem", "lpos", "zscan"))


def test_status_cancel_and_result_of_the_last_of_20000_jobs_read_no_list(broker, rdb):
    # Given a deep queue
    ids = fill(broker, DEPTH)
    client = Client(broker.url, broker=broker)
    before = scans(rdb)
    # When the job at its tail is looked at, waited on and cancelled
    assert client.status(ids[-1], queue=Q) == "ready"
    assert broker.find(Q, ids[-2])["envelope"].startswith(ids[-2] + " ")
    assert client.cancel(ids[-2], queue=Q) is True
    assert client.status(ids[-2], queue=Q) == "cancelled"
    # Then no command read or searched a list (the old find scanned them by offset, and
    # cancel's LREM walked the list, blocking the server for O(depth))
    assert scans(rdb) == before
    assert broker.counts(Q)["ready"] == DEPTH - 1


def test_a_job_cancelled_deep_in_its_list_never_runs_and_leaves_nothing_behind(broker, rdb):
    # Given a queue, and jobs cancelled in the middle of their list, at its head and its tail
    ids = fill(broker, 50)
    client = Client(broker.url, broker=broker)
    gone = {ids[0], ids[1], ids[10], ids[11], ids[25], ids[49]}
    for job_id in (ids[1], ids[10], ids[11], ids[25], ids[49], ids[0]):     # the head last
        assert client.cancel(job_id, queue=Q) is True
    # Then they are not counted, and the oldest waiting job is a live one
    assert broker.counts(Q)["ready"] == 44 and broker.ready_count(Q) == 44
    head = rdb.lindex(broker.keys(Q).ready[0], 0)
    assert jobmod.job_id(head) == ids[2]
    # When the queue is drained in small batches, none of them is reserved
    taken = []
    while True:
        reserved, _ = broker.reserve(Q, "c1", 4, 30)
        if not reserved:
            break
        for r in reserved:
            job = jobmod.decode(r.envelope, Q, r.token)
            taken.append(job.id)
            broker.ack(Q, [Ack(job.id, job.token, json.dumps({"result": 1}), 60, True)])
        counts = broker.counts(Q)
        assert counts["ready"] == 44 - len(taken)
        head = rdb.lindex(broker.keys(Q).ready[0], 0)
        assert head is None or jobmod.job_id(head) not in gone      # the head is live after every reserve
    assert taken == [i for i in ids if i not in gone]
    # And the index and the cancelled envelopes are gone with them
    k = broker.keys(Q)
    assert not rdb.exists(k.where, k.dead) and not rdb.hget(k.stats, "dead")


def test_a_waiting_job_pushed_by_a_release_without_the_index_is_found_and_cancelled(broker, rdb):
    # Given jobs written the way 0.1.0 wrote them: in the lists and sched, no index entry
    k = broker.keys(Q)
    fill(broker, 3)
    old_ready = [jobmod.encode("t:f", [i]) for i in range(3)]
    rdb.rpush(k.ready[0], *[env for _, env in old_ready])
    old_sched_id, old_sched = jobmod.encode("t:f", ["later"])
    rdb.zadd(k.sched, {old_sched: 10**13})
    # Then find falls back to the scan and finds them where they are
    assert broker.find(Q, old_ready[1][0])["state"] == "ready"
    assert broker.find(Q, old_sched_id)["state"] == "scheduled"
    assert broker.find(Q, "nosuchjob") is None
    # And cancel removes them
    client = Client(broker.url, broker=broker)
    assert client.cancel(old_ready[1][0], queue=Q) is True
    assert client.cancel(old_sched_id, queue=Q) is True
    assert broker.counts(Q)["ready"] == 5 and broker.counts(Q)["scheduled"] == 0


def test_a_scheduled_job_deep_in_sched_is_found_and_cancelled_by_its_index_entry(broker, rdb):
    ids = fill(broker, 5000, delay=3600)
    before = scans(rdb)
    found = broker.find(Q, ids[-1])
    assert found["state"] == "scheduled" and found["due_ms"] > 0
    assert Client(broker.url, broker=broker).cancel(ids[-1], queue=Q) is True
    assert broker.find(Q, ids[-1])["state"] == "cancelled"
    assert scans(rdb) == before and broker.counts(Q)["scheduled"] == 4999


def test_result_of_an_ended_job_leaves_no_watch_behind(broker, rdb):
    # Given a job that has ended
    (job_id,) = fill(broker, 1)
    (r,), _ = broker.reserve(Q, "c1", 1, 30)
    job = jobmod.decode(r.envelope, Q, r.token)
    broker.ack(Q, [Ack(job.id, job.token, json.dumps({"result": 5}), 60, True)])
    # When a caller starts watching it (result() does when the job ends between its
    # find and its watch), and when one asks for its result
    watch = broker.watch(Q, job_id)
    watch.close()
    assert Client(broker.url, broker=broker).result(job_id, timeout=1, queue=Q) == 5
    # Then nothing is left waiting for it (before, watch.lua added an entry first, which
    # stayed until some later result() call swept it)
    assert rdb.zcard(broker.keys(Q).watch) == 0


def test_a_lapsed_watch_goes_at_the_next_recovery_read(broker, rdb):
    # Given a caller that watched a waiting job and went away, its watch now past its expiry
    (job_id,) = fill(broker, 1)
    rdb.zadd(broker.keys(Q).watch, {job_id: 1})
    # When the supervisor's recovery reads the queue's expired leases, the watch goes
    assert broker.expired(Q) == []
    assert rdb.zcard(broker.keys(Q).watch) == 0


def test_nothing_of_a_drained_queue_is_left_but_its_totals_and_done_records(broker, rdb):
    # Given jobs pushed now and later, some cancelled, some retried, all drained
    ids = fill(broker, 200) + fill(broker, 20, delay=0.01)
    client = Client(broker.url, broker=broker)
    for job_id in ids[5:200:7]:
        client.cancel(job_id, queue=Q)
    retried = False
    while broker.counts(Q)["ready"] + broker.counts(Q)["scheduled"]:
        reserved, _ = broker.reserve(Q, "c1", 10, 30)
        for r in reserved:
            job = jobmod.decode(r.envelope, Q, r.token)
            if not retried:
                broker.retry(Q, job.id, job.token, 0, json.dumps({"message": "again"}))
                retried = True
            else:
                broker.ack(Q, [Ack(job.id, job.token, json.dumps({"result": 1}), 60, job.attempts <= 1)])
    # Then only the totals and the done records remain
    prefix = broker.keys(Q).prefix
    left = {key[len(prefix):] for key in rdb.scan_iter(prefix + "*")}
    assert {key for key in left if not key.startswith("done:")} <= {"stats", "errors"}, left
    assert rdb.hlen(broker.keys(Q).errors) == 0


def test_run_now_of_a_delayed_job_deep_in_sched_reads_no_set(broker, rdb):
    # Given many delayed jobs
    ids = fill(broker, 5000, delay=3600)
    before = scans(rdb)
    # When the last one and a job nobody pushed are run now, the first is moved, through the index
    assert broker.run_now(Q, [ids[-1], "no-such-job"]) == 1
    assert broker.find(Q, ids[-1])["state"] == "ready"
    assert scans(rdb) == before
