"""The broker contract: every state change atomic, fenced, and nothing lost."""
import json
import random
import select
import threading
import time

from mpqueue.core import envelope as jobmod
from mpqueue.brokers import Ack, PushItem
from tests.support import push_tags, wait_for

Q = "contract"


def push(broker, *tags, priority=0, delay=0.0, task="t:f"):
    return push_tags(broker, Q, *tags, priority=priority, delay=delay, task=task)


def take(broker, count=1, consumer="c1", lease=30.0, acks=()):
    reserved, next_due = broker.reserve(Q, consumer, count, lease, list(acks))
    return [jobmod.decode(r.envelope, Q, r.token) for r in reserved], next_due


def ack_of(job, record="{}", ttl=60):
    return Ack(job.id, job.token, record, ttl, job.attempts <= 1)


def test_reserve_is_fifo_and_counts_an_attempt(broker):
    push(broker, "a", "b", "c")
    jobs, _ = take(broker, 2)
    assert [j.args for j in jobs] == [["a"], ["b"]]
    assert all(j.attempts == 1 for j in jobs)
    assert broker.counts(Q)["ready"] == 1 and broker.counts(Q)["running"] == 2


def test_higher_priority_always_first(broker):
    push(broker, "low")
    push(broker, "high", priority=9)
    push(broker, "mid", priority=4)
    jobs, _ = take(broker, 3)
    assert [j.args[0] for j in jobs] == ["high", "mid", "low"]


def test_ack_removes_the_job_and_keeps_a_done_record(broker):
    push(broker, "a")
    (job,), _ = take(broker)
    assert broker.ack(Q, [ack_of(job, '{"result": 1}')]) == 1
    c = broker.counts(Q)
    assert (c["running"], c["done_total"]) == (0, 1)
    assert broker.find(Q, job.id) == {"state": "done", "result": 1}


def test_a_done_record_is_gone_after_its_result_ttl(broker):
    push(broker, "a")
    (job,), _ = take(broker)
    broker.ack(Q, [ack_of(job, '{"result": 1}', ttl=1)])
    assert broker.find(Q, job.id)["state"] == "done"
    wait_for(lambda: broker.find(Q, job.id) is None, 5, 0.05, what="done record expired")


def test_ack_folded_into_the_next_reserve(broker):
    push(broker, "a", "b")
    (a,), _ = take(broker)
    (b,), _ = take(broker, acks=[ack_of(a)])
    assert broker.counts(Q)["done_total"] == 1 and b.args == ["b"]


def test_a_stale_token_cannot_ack_fail_or_retry(broker):
    push(broker, "a")
    (job,), _ = take(broker)
    assert broker.retry(Q, job.id, job.token, 0, "{}") is True
    (again,), _ = take(broker)
    assert again.id == job.id and again.token != job.token
    # the first holder, presumed dead, wakes up: every settle is refused
    assert broker.ack(Q, [ack_of(job)]) == 0
    assert not broker.fail(Q, job.id, job.token, "{}")
    assert not broker.retry(Q, job.id, job.token, 0, "{}")
    assert not broker.release(Q, job.id, job.token)
    assert broker.counts(Q)["running"] == 1


def test_retry_spends_the_attempt_and_release_refunds_it(broker):
    push(broker, "a")
    (job,), _ = take(broker)
    broker.retry(Q, job.id, job.token, 0, json.dumps({"type": "error", "message": "x"}))
    (job,), _ = take(broker)
    assert job.attempts == 2
    assert broker.release(Q, job.id, job.token)
    (job,), _ = take(broker)
    assert job.attempts == 2


def test_released_job_goes_to_the_front(broker):
    push(broker, "a", "b")
    (a,), _ = take(broker)
    broker.release(Q, a.id, a.token)
    (first,), _ = take(broker)
    assert first.id == a.id


def test_a_dead_workers_batch_spends_only_the_running_jobs_attempt(broker):
    # Given a worker that reserved a batch of three and was running the first
    from mpqueue.core.config import QueueConfig
    from mpqueue.supervisor.recovery import Recovery
    push(broker, "a", "b", "c", "d")
    (a, b, c), _ = take(broker, 3)
    recovery = Recovery(broker, {Q: QueueConfig(name=Q, retries=3, retry_delay=0)})
    # When it dies and its supervisor settles what it held
    assert recovery.settle_consumer(Q, "c1", "crashed", running=a.id) is None and not recovery.pending()
    # Then the running job spent its attempt (retried at the back), and the rest
    # of the batch went back unspent, in their order, ahead of the queue
    jobs, _ = take(broker, 4, consumer="c2")
    assert [(j.args[0], j.attempts) for j in jobs] == [("b", 1), ("c", 1), ("d", 1), ("a", 2)]


def test_delayed_job_waits_for_its_due_time(broker):
    (job_id,) = push(broker, "later", delay=0.3)
    jobs, next_due = take(broker)
    assert jobs == [] and 0.1 < next_due <= 0.3
    assert broker.find(Q, job_id)["state"] == "scheduled"
    time.sleep(next_due)  # ok: waiting exactly for the due time under test
    jobs, _ = take(broker)
    assert [j.args for j in jobs] == [["later"]]


def test_fail_moves_to_failed_store_and_enqueues_hook_atomically(broker):
    push(broker, "a")
    (job,), _ = take(broker)
    _, hook = jobmod.encode("mpqueue:failure_hook", ["queue", "t:f", {}, {}], priority=9)
    assert broker.fail(Q, job.id, job.token, json.dumps({"type": "error"}), hook)
    assert broker.counts(Q)["failed"] == 1
    (h,), _ = take(broker)
    assert h.task == "mpqueue:failure_hook"
    assert broker.find(Q, job.id)["state"] == "failed"


def test_requeue_failed_resets_attempts(broker):
    push(broker, "a")
    (job,), _ = take(broker)
    broker.fail(Q, job.id, job.token, "{}")
    assert broker.requeue_failed(Q, None) == 1
    (job,), _ = take(broker)
    assert job.attempts == 1 and broker.counts(Q)["failed"] == 0


def test_expired_leases_are_reported_with_their_holder(broker):
    push(broker, "a")
    (job,), _ = take(broker, lease=0.05, consumer="node-x/1")
    wait_for(lambda: broker.expired(Q), 2, what="lease expiry")
    (held,) = broker.expired(Q)
    assert (held.id, held.token, held.consumer) == (job.id, job.token, "node-x/1")


def test_clean_drops_waiting_jobs_only(broker):
    push(broker, "a", "b")
    push(broker, "c", delay=60)
    take(broker)
    assert broker.clean(Q) == 2
    c = broker.counts(Q)
    assert (c["ready"], c["scheduled"], c["running"]) == (0, 0, 1)


def test_junk_in_the_queue_is_reserved_with_an_id_so_it_can_be_failed(broker):
    broker.push(Q, [PushItem("junk", 0, 0.0)])
    reserved, _ = broker.reserve(Q, "c", 1, 30)
    job_id = reserved[0].envelope.split()[0]
    assert broker.fail(Q, job_id, reserved[0].token, '{"type": "bad_payload"}')
    assert broker.counts(Q)["failed"] == 1


def test_a_push_wakes_a_waiter(broker):
    waiter = broker.waiter(Q)
    pusher = threading.Timer(0.05, lambda: push(broker, "a"))
    try:
        pusher.start()
        readable, _, _ = select.select([waiter], [], [], 5)
        assert readable
        waiter.drain()
    finally:
        pusher.join()       # its reply may still be on the way when the wake-up arrives
        waiter.close()


def test_concurrent_consumers_never_get_the_same_job(broker):
    n = 500
    push_many = [PushItem(jobmod.encode("t:f", [i])[1], 0, 0.0) for i in range(n)]
    broker.push(Q, push_many)
    seen, lock = [], threading.Lock()

    def consume(name):
        from mpqueue.brokers import open_broker
        own = open_broker(broker.url)
        while True:
            reserved, _ = own.reserve(Q, name, 3, 30)
            if not reserved:
                return
            with lock:
                seen.extend(jobmod.decode(r.envelope).id for r in reserved)
    threads = [threading.Thread(target=consume, args=(f"c{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == n and len(set(seen)) == n


def test_every_expired_lease_is_recovered_in_one_reap_not_100_at_a_time(broker):
    # Given 250 jobs held by a node that is gone: their leases (1 ms) have ended
    from mpqueue.core.config import QueueConfig
    from mpqueue.supervisor.recovery import Recovery
    push(broker, *[f"j{i}" for i in range(250)])
    take(broker, 250, consumer="dead-node/1", lease=0.001)
    wait_for(lambda: len(broker.expired(Q, 1000)) == 250, 5, what="250 expired leases")
    # When the supervisor reaps once
    more = Recovery(broker, {Q: QueueConfig(name=Q, retries=3, retry_delay=0)}).reap_expired(Q)
    # Then every one is back, an attempt spent, and nothing is left to reap
    counts = broker.counts(Q)
    assert (more, counts["running"], counts["ready"]) == (False, 0, 250)


def test_renew_keeps_the_leases_of_live_consumers_and_never_shortens_one(broker):
    # Given jobs held by a live worker (c1), a dead one (c2), and one with a long lease (c3)
    push(broker, "a", "b", "c", "d")
    take(broker, 2, consumer="c1", lease=0.05)
    (dead,), _ = take(broker, 1, consumer="c2", lease=0.05)
    (long,), _ = take(broker, 1, consumer="c3", lease=60)
    # When the live ones' leases are renewed (c3's to less than it has)
    assert broker.renew(Q, ["c1", "c3"], 30) == 3
    assert broker.renew(Q, ["c3"], 0.2) == 1
    assert broker.renew(Q, [], 30) == 0
    # Then only the dead worker's lease ends
    wait_for(lambda: broker.expired(Q, 10), 5, what="the dead worker's lease to end")
    time.sleep(0.3)  # ok: past the deadline a shortening renewal would have set
    assert [h.id for h in broker.expired(Q, 10)] == [dead.id]


def test_one_broker_used_from_many_threads_at_once_loses_and_repeats_nothing(broker):
    """A worker with concurrency > 1 shares its broker between its main thread and
    the jobs' threads (which push): every call still one atomic step."""
    pushed, taken, errors = [], [], []
    lock = threading.Lock()

    def producer(n):
        try:
            for i in range(50):
                pushed.extend(push(broker, f"p{n}.{i}"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def consumer(n):
        try:
            idle_since = time.monotonic()
            acks = []
            while time.monotonic() - idle_since < 1.0:
                jobs, _ = take(broker, count=3, consumer=f"c{n}", acks=acks)
                acks = [ack_of(j) for j in jobs]
                with lock:
                    taken.extend(j.id for j in jobs)
                if jobs:
                    idle_since = time.monotonic()
            broker.ack(Q, acks)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)] + \
        [threading.Thread(target=consumer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(pushed) == 200 and sorted(taken) == sorted(pushed)      # each exactly once
    assert broker.counts(Q)["done_total"] == 200 and broker.held(Q) == []


# -- dashboard and metrics reads: counts_many, scheduled, delete_failed
def test_counts_many_reads_each_queue_as_counts_does(broker):
    # Given: a dozen queues (on a Cluster their slots lie on every master), each in another state
    queues = [f"many{i}" for i in range(12)]
    for i, queue in enumerate(queues):
        push_tags(broker, queue, *[f"{queue}.{n}" for n in range(i % 4)])
        push_tags(broker, queue, "later", delay=60 * (i % 2))
        if i % 3 == 0:
            (res,), _ = broker.reserve(queue, "c1", 1, 30)
            broker.fail(queue, jobmod.job_id(res.envelope), res.token, "{}")
    # When: they are read in one call, a never-used queue and a repeated name among them
    asked = queues + ["never-used", queues[0]]
    many = broker.counts_many(asked)
    # Then: every queue asked for has exactly what counts() says of it
    assert list(many) == list(dict.fromkeys(asked))
    assert many == {q: broker.counts(q) for q in asked}
    assert many["never-used"] == dict.fromkeys(many["never-used"], 0)
    assert many["many3"]["failed"] == 1 and many["many3"]["failed_total"] == 1
    assert broker.counts_many([]) == {}


def test_scheduled_lists_delayed_jobs_next_due_first(broker):
    # Given: delayed jobs pushed out of order, a retry waiting out its delay, and a ready job
    late, soon, middle = (push(broker, tag, delay=delay)[0] for tag, delay in (("late", 90), ("soon", 30),
                                                                               ("middle", 60)))
    push(broker, "now")
    (job,), _ = take(broker)
    assert broker.retry(Q, job.id, job.token, 45, "{}")
    # When / Then: scheduled() has them by due time, each with its envelope and due time
    rows = broker.scheduled(Q)
    assert [r[0] for r in rows] == [soon, job.id, middle, late]
    assert all(jobmod.job_id(envelope) == job_id for job_id, envelope, _ in rows)
    now_ms = time.time() * 1000
    assert all(abs(due - (now_ms + delay * 1000)) < 5000 for (_, _, due), delay in zip(rows, (30, 45, 60, 90)))
    assert [r[0] for r in broker.scheduled(Q, limit=2)] == [soon, job.id]
    assert broker.scheduled(Q, limit=0) == [] and broker.scheduled("never-used") == []


def test_delete_failed_drops_only_the_named_failed_jobs(broker):
    # Given: three failed jobs and a ready one
    failed = []
    for tag in ("a", "b", "c"):
        push(broker, tag)
        (job,), _ = take(broker)
        assert broker.fail(Q, job.id, job.token, "{}")
        failed.append(job.id)
    (ready,) = push(broker, "d")
    # When: two of them, an unknown id and the ready job's id are deleted (one twice)
    dropped = broker.delete_failed(Q, [failed[0], failed[1], failed[0], "no-such-job", ready])
    # Then: exactly the two failed jobs are gone, the rest stays
    assert dropped == 2
    assert broker.find(Q, failed[0]) is None and broker.find(Q, failed[1]) is None
    assert broker.find(Q, failed[2])["state"] == "failed" and broker.find(Q, ready)["state"] == "ready"
    c = broker.counts(Q)
    assert (c["failed"], c["ready"], c["failed_total"]) == (1, 1, 3)
    assert broker.delete_failed(Q, []) == 0 and broker.delete_failed(Q, failed[:2]) == 0


def _fail_all(broker, jobs):
    for job in jobs:
        assert broker.fail(Q, job.id, job.token, json.dumps({"type": "error", "at": time.time()}))


def _clock_moves_on():
    # failure times are in ms: let the clock pass a tick so the groups cannot tie
    start = time.time()
    wait_for(lambda: time.time() - start > 0.003, 1, 0.001, what="the clock to advance")


def test_failed_lists_the_oldest_failures_first_however_many_there_are(broker):
    # Given 300 failures (enough for Redis to keep them in a hash table, whose scan
    # order is arbitrary), failed in three groups, in an order unlike the push order
    push(broker, *range(300))
    jobs, _ = take(broker, 300)
    random.Random(18).shuffle(jobs)
    oldest, middle, rest = jobs[:5], jobs[5:55], jobs[55:]
    for group in (oldest, middle):
        _fail_all(broker, group)
        _clock_moves_on()
    _fail_all(broker, rest)
    # When the failed store is read with a limit
    # Then it is the oldest failures, oldest first, whatever the limit
    assert {row[0] for row in broker.failed(Q, 5)} == {j.id for j in oldest}
    first = [row[0] for row in broker.failed(Q, 55)]
    assert set(first[:5]) == {j.id for j in oldest} and set(first[5:]) == {j.id for j in middle}
    every = broker.failed(Q, 1000)
    assert len(every) == 300 and [r[0] for r in every[:55]] == first
    # and after a retry and a delete the order still holds, without the gone ones
    broker.requeue_failed(Q, [oldest[0].id])
    broker.delete_failed(Q, [oldest[1].id])
    assert {row[0] for row in broker.failed(Q, 3)} == {j.id for j in oldest[2:]}
    assert broker.failed(Q, 0) == [] and broker.failed("never-used") == []


def test_failed_pages_newest_first_at_any_offset(broker):
    # Given: 30 failures in three groups, each group a tick of the clock later
    push(broker, *range(30))
    jobs, _ = take(broker, 30)
    groups = [jobs[:10], jobs[10:20], jobs[20:]]
    for group in groups:
        _fail_all(broker, group)
        _clock_moves_on()
    ids = [{j.id for j in g} for g in groups]
    # When: it is read newest first, a page at a time
    pages = [[row[0] for row in broker.failed(Q, 10, offset=o, newest_first=True)] for o in (0, 10, 20, 30)]
    # Then: each page is one group, newest group first, and past the end is empty
    assert [set(p) for p in pages[:3]] == [ids[2], ids[1], ids[0]] and pages[3] == []
    # And: oldest first by offset is the same order reversed, page for page
    assert {r[0] for r in broker.failed(Q, 10, offset=10)} == ids[1]
    assert {r[0] for r in broker.failed(Q, 5, offset=25)} <= ids[2]
    assert broker.failed(Q, 0, offset=5, newest_first=True) == []


def test_scheduled_pages_by_due_time(broker):
    # Given: five delayed jobs due a minute apart, pushed out of order
    due = {}
    for n in (3, 0, 4, 1, 2):
        due[n] = push(broker, f"d{n}", delay=60 * (n + 1))[0]
    # When / Then: pages of two, next due first, and past the end is empty
    assert [r[0] for r in broker.scheduled(Q, 2)] == [due[0], due[1]]
    assert [r[0] for r in broker.scheduled(Q, 2, offset=2)] == [due[2], due[3]]
    assert [r[0] for r in broker.scheduled(Q, 2, offset=4)] == [due[4]]
    assert broker.scheduled(Q, 2, offset=5) == []


def test_last_errors_tells_the_error_of_a_job_waiting_for_its_retry(broker):
    # Given: a job that failed an attempt and waits for its retry, and a plain delayed job
    push(broker, "r")
    (job,), _ = take(broker)
    error = json.dumps({"type": "error", "message": "ValueError: nope", "at": time.time()})
    assert broker.retry(Q, job.id, job.token, 60, error)
    (later,) = push(broker, "later", delay=60)
    # When / Then: the retry's last error is there, and nothing for the others
    found = broker.last_errors(Q, [job.id, later, "no-such-job"])
    assert list(found) == [job.id] and json.loads(found[job.id])["message"] == "ValueError: nope"
    assert broker.last_errors(Q, []) == {}


def test_run_now_makes_delayed_jobs_ready_with_their_attempts_unchanged(broker):
    # Given: a retry waiting out its delay (one attempt spent), two delayed jobs and a ready one
    push(broker, "r")
    (job,), _ = take(broker)
    assert broker.retry(Q, job.id, job.token, 600, "{}")
    first, second = push(broker, "a", delay=600)[0], push(broker, "b", delay=600)[0]
    (ready,) = push(broker, "now")
    # When: the retry and one delayed job are run now (with an unknown and a ready id)
    moved = broker.run_now(Q, [job.id, first, "no-such-job", ready])
    # Then: exactly those two are ready, after the job that was ready already, in the order given, attempts kept
    assert moved == 2
    c = broker.counts(Q)
    assert (c["ready"], c["scheduled"]) == (3, 1)
    taken, _ = take(broker, 3)
    assert [j.id for j in taken] == [ready, job.id, first]
    assert [j.attempts for j in taken] == [1, 2, 1]       # reserving counts the attempt now running
    assert broker.find(Q, second)["state"] == "scheduled"
    # And: a job no longer delayed is not moved again
    assert broker.run_now(Q, [job.id, first]) == 0 and broker.run_now(Q, []) == 0


# -- oldest_ages: how long each queue's oldest waiting job has waited (metrics, dashboard)
def push_due(broker, queue, seconds_ago, priority=0, delay=0.0):
    """A job whose producer stamped it due `seconds_ago` s ago (its clock: no sleeping)."""
    job_id = jobmod.new_id()
    due = int(time.time() * 1000 - seconds_ago * 1000)
    broker.push(queue, [PushItem(f"{job_id} 0 {priority} " + json.dumps({"t": "t:f", "e": due}), priority, delay)])
    return job_id


def test_oldest_ages_is_zero_for_queues_where_nothing_waits(broker):
    # Given: a queue with a job running, one with a delayed job not yet due, one never used
    push_due(broker, "running", 50)
    (res,), _ = broker.reserve("running", "c1", 1, 30)
    push_tags(broker, "later", "x", delay=600)
    # When / Then: none of them has a job waiting, so each reads 0.0
    assert broker.oldest_ages(["running", "later", "never-used"]) == \
        {"running": 0.0, "later": 0.0, "never-used": 0.0}
    assert broker.oldest_ages([]) == {}


def test_oldest_ages_counts_the_oldest_head_of_any_priority(broker):
    # Given: a low-priority job due 40 s ago starved behind high-priority ones due 5 s ago
    push_due(broker, Q, 40, priority=0)
    push_due(broker, Q, 10, priority=0)
    push_due(broker, Q, 5, priority=9)
    # When / Then: the age is the low-priority job's, not the next one to run
    age = broker.oldest_ages([Q])[Q]
    assert 39 <= age < 45
    # and once it is taken (the priority-9 job first, then it), the next oldest counts
    take(broker, count=2)
    assert 9 <= broker.oldest_ages([Q])[Q] < 15


def test_oldest_ages_of_a_job_due_in_the_future_by_its_producers_clock_is_zero(broker):
    # Given: a producer whose clock runs a minute ahead
    push_due(broker, Q, -60)
    # When / Then: the age is never negative
    assert broker.oldest_ages([Q]) == {Q: 0.0}


def test_oldest_ages_counts_a_delayed_job_from_its_due_time_once_due(broker):
    # Given: a job delayed by 0.2 s that no consumer promotes (nobody reserves)
    push_tags(broker, Q, "soon", delay=0.2)
    assert broker.oldest_ages([Q]) == {Q: 0.0}
    # When: its due time passes
    wait_for(lambda: broker.oldest_ages([Q])[Q] > 0, timeout=10)
    # Then: it counts from its due time, not from its push, while it is still delayed
    assert broker.oldest_ages([Q])[Q] < 9.5
    assert broker.counts(Q)["scheduled"] == 1


def test_oldest_ages_reads_many_queues_each_as_alone(broker):
    # Given: a dozen queues (on a Cluster their slots lie on every master), each with its own age
    queues = [f"aged{i}" for i in range(12)]
    for i, queue in enumerate(queues):
        push_due(broker, queue, 100 + 20 * i, priority=i % 10)
        push_due(broker, queue, 10, priority=(i + 3) % 10)
    # When: they are read in one call, with a never-used queue and a repeated name
    asked = queues + ["never-used", queues[0]]
    ages = broker.oldest_ages(asked)
    # Then: every queue asked for is there once, with its oldest job's age
    assert list(ages) == list(dict.fromkeys(asked))
    for i, queue in enumerate(queues):
        assert 100 + 20 * i <= ages[queue] < 105 + 20 * i, queue
    assert ages["never-used"] == 0.0


def test_counts_and_ages_reads_both_as_each_alone(broker):
    # Given: queues with waiting, delayed and no jobs (on a Cluster, on every master)
    queues = [f"both{i}" for i in range(6)]
    for i, queue in enumerate(queues):
        push_due(broker, queue, 60 * (i + 1), priority=i)
        push_tags(broker, queue, "later", delay=600)
    asked = queues + ["never-used"]
    # When: both are read at once
    counts, ages = broker.counts_and_ages(asked)
    # Then: the counts are counts_many's, the ages oldest_ages' (give or take the clock between)
    assert counts == broker.counts_many(asked)
    alone = broker.oldest_ages(asked)
    assert list(ages) == asked and all(abs(ages[q] - alone[q]) < 5 for q in asked)
    assert 60 <= ages["both0"] < 65 and ages["never-used"] == 0.0
