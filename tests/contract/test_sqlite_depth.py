"""The SQLite broker at depth (issue #27 item 9), asserted without timing: query
plans, counters against COUNT(*), the WAL's and the file's size, which watcher a
job's end wakes. bench/sqlite_depth.py has the figures."""
import json
import os
import random
import select
import sqlite3
import threading

import pytest

from mpqueue.brokers import Ack, PushItem, open_broker
from mpqueue.brokers.sqlite import upkeep
from mpqueue.core import envelope as jobmod

Q = "q"


@pytest.fixture
def broker(tmp_path):
    b = open_broker(f"sqlite://{tmp_path}/q.db")
    yield b
    b.close()


def push(broker, n=1, queue=Q, delay=0.0, size=0):
    items = [jobmod.encode("t:f", ["x" * size] if size else [i]) for i in range(n)]
    broker.push(queue, [PushItem(env, 0, delay) for _, env in items])
    return [job_id for job_id, _ in items]


def take(broker, count=1, queue=Q, acks=()):
    reserved, _ = broker.reserve(queue, "c1", count, 30.0, list(acks))
    return [jobmod.decode(r.envelope, queue, r.token) for r in reserved]


def ack_of(job, ttl=60):
    return Ack(job.id, job.token, json.dumps({"result": None}), ttl, True)


def plans_of(broker, call) -> list[tuple[str, list[str]]]:
    """(statement, its query plan) of every statement `call` runs on the broker's
    connection: the plan is what decides whether depth costs."""
    seen = []
    broker.conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        broker.conn.set_trace_callback(None)
    raw = sqlite3.connect(broker.path)
    try:
        return [(sql, [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + sql)])
                for sql in seen if sql.split()[0].upper() in ("SELECT", "UPDATE", "DELETE")]
    finally:
        raw.close()


def test_finding_any_job_goes_down_the_id_index_in_one_snapshot(broker):
    # Given a queue whose oldest job sorts first in the (queue, state, ord) index
    oldest, *_ = push(broker, 200)
    statements = []
    broker.conn.set_trace_callback(statements.append)
    # When it is found
    found = broker.find(Q, oldest)
    broker.conn.set_trace_callback(None)
    assert found["state"] == "ready"
    # Then both places a job can be are read in one transaction
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
    # and every lookup of the job table takes the id index, never a walk of the queue
    for sql, plan in plans_of(broker, lambda: broker.find(Q, oldest)):
        if " job " in sql + " ":
            assert all("job_id" in step for step in plan), (sql, plan)


def test_cancelling_a_job_looks_it_up_by_id(broker):
    ids = push(broker, 200)
    for sql, plan in plans_of(broker, lambda: broker.cancel(Q, ids[0], None, 60)):
        if "FROM job " in sql and "id=" in sql.replace(" ", ""):
            assert all("job_id" in step or "rowid" in step.lower() for step in plan), (sql, plan)


def test_counts_read_counters_not_jobs(broker):
    push(broker, 300)
    push(broker, 10, delay=3600)
    plans = plans_of(broker, lambda: (broker.counts_many([Q, "other"]), broker.ready_count(Q)))
    assert plans
    for sql, plan in plans:
        assert not any(step.split()[1] == "job" for step in plan if len(step.split()) > 1), (sql, plan)
    assert broker.counts(Q)["ready"] == 300 and broker.counts(Q)["scheduled"] == 10
    assert broker.ready_count(Q) == 300 and broker.ready_count("other") == 0


def counted(broker):
    return {(q, s): n for q, s, n in broker._read("SELECT queue, state, n FROM job_count") if n}


def actual(broker):
    return {(q, s): n for q, s, n in broker._read("SELECT queue, state, count(*) FROM job GROUP BY queue, state")}


def test_counters_equal_count_star_after_random_operations(broker):
    # Given two queues and a seeded mix of every state change the broker makes
    rng = random.Random(27)
    held = {Q: [], "r": []}
    for step in range(400):
        queue = rng.choice([Q, "r"])
        op = rng.randrange(11)
        if op <= 2:
            push(broker, rng.randrange(1, 5), queue, delay=rng.choice([0, 0, 3600]))
        elif op == 3:
            held[queue] += take(broker, rng.randrange(1, 4), queue)
        elif op in (4, 5, 6, 7) and held[queue]:
            job = held[queue].pop(rng.randrange(len(held[queue])))
            [lambda: broker.ack(queue, [ack_of(job)]),
             lambda: broker.retry(queue, job.id, job.token, rng.choice([0, 60]), "{}"),
             lambda: broker.release(queue, job.id, job.token),
             lambda: broker.fail(queue, job.id, job.token, "{}")][op - 4]()
        elif op == 8:
            failed = [f[0] for f in broker.failed(queue)]
            if failed:
                rng.choice([lambda: broker.requeue_failed(queue, failed[:1]),
                            lambda: broker.delete_failed(queue, failed[:1]), lambda: broker.purge_failed(queue)])()
        elif op == 9:
            found = [r[0] for r in broker._read("SELECT id FROM job WHERE queue=?", (queue,))]
            if found:
                broker.cancel(queue, rng.choice(found), None, 60)
        elif step % 97 == 0:
            broker.clean(queue)
        # Then the counters say what COUNT(*) says, after every step
        assert counted(broker) == actual(broker), step
    assert {q: broker.counts(q) for q in (Q, "r")}  # and counts() reads them without error


def test_a_file_without_counters_gets_them_counted_when_opened(tmp_path):
    # Given a file as v0.1.0 leaves it: jobs, no counters, no triggers
    url = f"sqlite://{tmp_path}/old.db"
    b = open_broker(url)
    push(b, 7)
    push(b, 3, delay=3600)
    b.close()
    raw = sqlite3.connect(tmp_path / "old.db")
    for name in ("job_count_insert", "job_count_delete", "job_count_update"):
        raw.execute(f"DROP TRIGGER {name}")
    raw.execute("DROP TABLE job_count")
    raw.commit()
    # When this release opens it
    b = open_broker(url)
    assert b.counts(Q)["ready"] == 7 and b.counts(Q)["scheduled"] == 3
    # Then a writer that knows nothing of counters (v0.1.0's SQL) keeps them right too
    raw.execute("INSERT INTO job(queue, id, state, ord, env) VALUES (?,?,?,?,?)", (Q, "x", 0, 1, "x 0 0 {}"))
    raw.execute("DELETE FROM job WHERE id IN (SELECT id FROM job WHERE queue=? AND state=1 LIMIT 1)", (Q,))
    raw.commit()
    raw.close()
    assert b.counts(Q)["ready"] == 8 and b.counts(Q)["scheduled"] == 2
    b.close()


def test_the_wal_stays_bounded_under_steady_readers(broker, monkeypatch):
    # Given two readers that always hold a snapshot between them (each renews its
    # own in a loop, as status, mpqctl and the dashboard read), a small WAL limit,
    # and a generous wait for readers to move on (a bound, not a timing claim)
    monkeypatch.setattr(upkeep, "CHECKPOINT_AT", 256 << 10, raising=False)
    monkeypatch.setattr(upkeep, "WAL_LIMIT", 1 << 20, raising=False)
    monkeypatch.setattr(upkeep, "CHECKPOINT_WAIT_MS", 5000, raising=False)
    stop = threading.Event()

    def read():
        conn = sqlite3.connect(broker.path, isolation_level=None)
        while not stop.is_set():
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM queue").fetchone()
            conn.execute("COMMIT")
        conn.close()

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    wal, peak = broker.path + "-wal", 0
    try:
        # When jobs keep coming (about 18 MB of WAL frames in all)
        for _ in range(1500):
            push(broker, 1, size=2000)
            peak = max(peak, os.path.getsize(wal))
    finally:
        stop.set()
        for t in readers:
            t.join()
    # Then the WAL was emptied along the way: it never held more than a few limits' worth
    assert peak < 4 * (1 << 20), peak


def test_free_pages_are_given_back_after_a_drain(broker):
    # Given a queue of 3,000 jobs of 2 kB, drained
    push(broker, 3000, size=2000)
    acks = []
    while True:
        jobs = take(broker, 100, acks=acks)
        acks = [ack_of(j, ttl=0) for j in jobs]
        if not jobs:
            break
    raw = sqlite3.connect(broker.path)
    pages_before = raw.execute("PRAGMA page_count").fetchone()[0]
    assert raw.execute("PRAGMA freelist_count").fetchone()[0] > pages_before // 2
    # When the supervisor's heartbeat comes round a few times
    for _ in range(5):
        broker.heartbeat("n1", {"id": "n1"}, ttl=60)
    # Then the free pages went back to the file system and the file shrank
    assert raw.execute("PRAGMA freelist_count").fetchone()[0] < upkeep.VACUUM_MIN_FREE
    assert os.path.getsize(broker.path) < pages_before * 4096 // 4
    raw.close()


def test_a_file_of_an_earlier_release_is_converted_to_incremental_vacuum_when_opened(tmp_path):
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE job (queue TEXT NOT NULL, id TEXT NOT NULL, state INTEGER NOT NULL, "
                "ord INTEGER NOT NULL, env TEXT NOT NULL, token TEXT, consumer TEXT, error TEXT)")
    raw.commit()
    assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    raw.close()
    b = open_broker(f"sqlite://{path}")
    assert b._read("PRAGMA auto_vacuum")[0][0] == upkeep.INCREMENTAL
    b.close()


def test_expired_done_records_go_with_the_next_ack_not_a_timer(broker):
    # Given done records past their ttl (as a day of acks with result_ttl leaves them)
    with broker._write() as db:
        db.executemany("INSERT INTO done(queue, id, record, expires) VALUES (?,?,?,1)",
                       [(Q, f"old{i}", "{}") for i in range(10)])
    # When a job is acknowledged
    push(broker)
    [job] = take(broker)
    broker.ack(Q, [ack_of(job)])
    # Then they are gone, with no heartbeat
    assert broker._read("SELECT count(*) FROM done WHERE expires < 1000")[0][0] == 0
    assert broker.find(Q, job.id)["state"] == "done"


def readable(watch, timeout):
    return bool(select.select([watch], [], [], timeout)[0])


def test_a_watch_is_woken_by_its_own_jobs_end_only(broker):
    # Given watchers of two running jobs and of a waiting one
    a, b, c = push(broker, 3)
    ja, jb = take(broker, 2)
    wa, wb, wc = (broker.watch(Q, i) for i in (a, b, c))
    try:
        # When one of them is acknowledged
        broker.ack(Q, [ack_of(ja)])
        # Then only its watcher wakes (the hints are written before ack returns)
        assert readable(wa, 5)
        assert not readable(wb, 0) and not readable(wc, 0)
        # and a failure and a cancel likewise wake their own job's watcher only
        broker.fail(Q, jb.id, jb.token, "{}")
        assert readable(wb, 5) and not readable(wc, 0)
        wb.drain()
        assert broker.cancel(Q, c, None, 60) == "cancelled"
        assert readable(wc, 5) and not readable(wb, 0)
    finally:
        for w in (wa, wb, wc):
            w.close()


def test_watch_files_are_cleaned_with_their_job(broker):
    [job_id] = push(broker)
    end_dir = broker._wake_dir(Q) + ".end"
    # A watcher that leaves takes its job's directory along
    broker.watch(Q, job_id).close()
    assert os.listdir(end_dir) == []
    # and one that died without closing is removed when its job ends
    pid = os.fork()
    if pid == 0:
        broker.watch(Q, job_id)
        os._exit(0)
    os.waitpid(pid, 0)
    assert len(os.listdir(end_dir)) == 1
    [job] = take(broker)
    broker.ack(Q, [ack_of(job)])
    assert os.listdir(end_dir) == []


def test_a_watch_made_while_its_job_directory_is_removed_is_made_again(tmp_path, monkeypatch):
    # A job's end removes its (empty) wake directory; a watcher that made it a moment
    # before, between its mkdir and its chmod, must make it again, not fail result().
    from mpqueue.brokers.sqlite import wake
    real_chmod, raced = os.chmod, []

    directory = str(tmp_path / "db-wake" / "q.end" / "job")

    def chmod(path, mode, *a, **kw):
        if path == directory and not raced:
            raced.append(path)
            os.rmdir(path)                 # the waker's rmdir, just after our mkdir
        return real_chmod(path, mode, *a, **kw)
    monkeypatch.setattr(wake.os, "chmod", chmod)
    watch = wake.FifoJobWatch(directory, (0o700, 0o600))
    try:
        assert raced and os.path.isdir(directory)
    finally:
        watch.close()
