"""The SQLite broker's inspection and administration (what mpqctl, status, metrics
and the dashboard need): counts, delayed jobs, the failed store, pausing a
queue, finding a job, nodes and queue names."""
from __future__ import annotations

import json

from ...core import envelope as jobmod
from ..base import Inspection as InspectionContract
from . import upkeep
from .db import FAILED, HELD, READY, SCHED, band, now_ms

_CHUNK = 500      # ids or queue names per statement (SQLite limits a statement's variables)


def _counts(queue: str, by_state: dict, totals: tuple, throttled: int) -> dict:
    return {"ready": by_state.get((queue, READY), 0), "scheduled": by_state.get((queue, SCHED), 0),
            "running": by_state.get((queue, HELD), 0), "failed": by_state.get((queue, FAILED), 0),
            "done_total": totals[0], "failed_total": totals[1], "throttled_total": throttled}


def _age(rows, now: int) -> float:
    """Seconds since the earliest due time among (envelope, None) heads and (None,
    due) of the earliest overdue delayed job; 0.0 when nothing waits."""
    dues = [jobmod.due_ms(env) if env is not None else due for env, due in rows if env is not None or due]
    dues = [due for due in dues if 0 < due <= now]
    return (now - min(dues)) / 1000.0 if dues else 0.0


class Inspection(InspectionContract):
    """Mixed into SQLiteBroker, which provides _read, _read_together, _write, _ord, _has_ready, _wake."""

    def counts(self, queue):
        return self.counts_many([queue])[queue]

    def counts_many(self, queues):
        names = list(dict.fromkeys(queues))
        queries = []
        for i in range(0, len(names), _CHUNK):       # SQLite caps the variables of one statement
            chunk = names[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            # job_count: kept by triggers (upkeep.py), so a million jobs cost what ten do
            queries += [(f"SELECT queue, state, n FROM job_count WHERE queue IN ({marks})", chunk),
                        (f"SELECT queue, done, failed FROM stats WHERE queue IN ({marks})", chunk),
                        (f"SELECT queue, throttled FROM rate WHERE queue IN ({marks})", chunk)]
        results = self._read_together(queries)
        by_state = {(q, state): n for rows in results[::3] for q, state, n in rows}
        totals = {q: (done, failed) for rows in results[1::3] for q, done, failed in rows}
        throttled = {q: n for rows in results[2::3] for q, n in rows}
        return {q: _counts(q, by_state, totals.get(q, (0, 0)), throttled.get(q, 0)) for q in queues}

    def oldest_ages(self, queues):
        # Per queue: the head of each priority's band and the earliest delayed job, each
        # one step down the (queue, state, ord) index whatever the depth.
        names = list(dict.fromkeys(queues))
        heads = " UNION ALL ".join(f"SELECT * FROM (SELECT env, NULL FROM job WHERE queue=?1 AND state={READY} "
                                   f"AND ord>={low} AND ord<{high} ORDER BY ord LIMIT 1)"
                                   for low, high in map(band, range(10)))
        sql = f"{heads} UNION ALL SELECT NULL, min(ord) FROM job WHERE queue=?1 AND state={SCHED} AND ord<=?2"
        now = now_ms()
        results = self._read_together([(sql, (q, now)) for q in names])
        ages = {q: _age(rows, now) for q, rows in zip(names, results)}
        return {q: ages[q] for q in queues}

    def scheduled(self, queue, limit=100, offset=0):
        if limit <= 0:
            return []
        return [tuple(r) for r in self._read(
            "SELECT id, env, ord FROM job WHERE queue=? AND state=? ORDER BY ord LIMIT ? OFFSET ?",
            (queue, SCHED, limit, max(0, offset)))]

    def last_errors(self, queue, ids):
        ids = list(dict.fromkeys(ids))
        out = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            out.update(self._read(f"SELECT id, error FROM job WHERE queue=? AND state IN (?, ?, ?) "
                                  f"AND error IS NOT NULL AND id IN ({','.join('?' * len(chunk))})",
                                  (queue, READY, SCHED, HELD, *chunk)))
        return out

    def run_now(self, queue, ids):
        moved = 0
        with self._write() as db:
            wake = not self._has_ready(db, queue)
            for job_id in dict.fromkeys(ids):
                row = db.execute("SELECT rowid, env FROM job WHERE queue=? AND id=? AND state=?",
                                 (queue, job_id, SCHED)).fetchone()
                if row is None:
                    continue
                head = jobmod.header(row[1])
                db.execute("UPDATE job SET state=?, ord=? WHERE rowid=?",
                           (READY, self._ord(db, queue, head.priority if head else 0), row[0]))
                moved += 1
        if wake and moved:
            self._wake(queue)
        return moved

    def delete_failed(self, queue, ids):
        ids = list(dict.fromkeys(ids))
        if not ids:
            return 0
        dropped = 0
        with self._write() as db:
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i:i + _CHUNK]
                dropped += db.execute(f"DELETE FROM job WHERE queue=? AND state=? AND id IN "
                                      f"({','.join('?' * len(chunk))})", (queue, FAILED, *chunk)).rowcount
        return dropped

    def ready_count(self, queue):
        rows = self._read("SELECT n FROM job_count WHERE queue=? AND state=?", (queue, READY))
        return rows[0][0] if rows else 0

    def failed(self, queue, limit=100, offset=0, newest_first=False):
        if limit <= 0:
            return []
        order = "DESC" if newest_first else ""
        return [tuple(r) for r in self._read(
            f"SELECT id, env, error FROM job WHERE queue=? AND state=? ORDER BY ord {order}, rowid {order} "
            "LIMIT ? OFFSET ?", (queue, FAILED, limit, max(0, offset)))]

    def requeue_failed(self, queue, ids):
        moved = 0
        with self._write() as db:
            if ids is None:
                rows = db.execute("SELECT rowid, env FROM job WHERE queue=? AND state=? ORDER BY ord",
                                  (queue, FAILED)).fetchall()
            else:
                rows = [r for i in ids for r in db.execute(
                    "SELECT rowid, env FROM job WHERE queue=? AND id=? AND state=?", (queue, i, FAILED))]
            wake = bool(rows) and not self._has_ready(db, queue)
            for rowid, env in rows:
                head = jobmod.header(env)
                if not head:
                    continue
                db.execute("UPDATE job SET state=?, ord=?, env=?, error=NULL WHERE rowid=?",
                           (READY, self._ord(db, queue, head.priority), jobmod.with_attempts(head, 0), rowid))
                moved += 1
        if wake and moved:
            self._wake(queue)
        return moved

    def clean(self, queue):
        with self._write() as db:
            return db.execute("DELETE FROM job WHERE queue=? AND state IN (?, ?)", (queue, READY, SCHED)).rowcount

    def purge_failed(self, queue):
        with self._write() as db:
            return db.execute("DELETE FROM job WHERE queue=? AND state=?", (queue, FAILED)).rowcount

    def pause(self, queue):
        with self._write() as db:
            return db.execute("INSERT OR IGNORE INTO paused(queue) VALUES (?)", (queue,)).rowcount == 1

    def resume(self, queue):
        with self._write() as db:
            resumed = db.execute("DELETE FROM paused WHERE queue=?", (queue,)).rowcount == 1
        if resumed:
            self._wake(queue)          # after the commit: a woken consumer must find it running
        return resumed

    def paused(self, queues):
        names = list(dict.fromkeys(queues))
        queries = [(f"SELECT queue FROM paused WHERE queue IN ({','.join('?' * len(chunk))})", chunk)
                   for chunk in (names[i:i + _CHUNK] for i in range(0, len(names), _CHUNK))]
        return {q for rows in self._read_together(queries) for (q,) in rows} if queries else set()

    def find(self, queue, job_id):
        # One snapshot of both places a job can be. No ORDER BY: sorting by state let the
        # planner walk job_order through every job of the queue (570 ms at 1M) instead of
        # job_id's one step; an id has at most a few rows (a failed one and a new one).
        rows, done = self._read_together([
            ("SELECT state, ord, env, consumer, error FROM job WHERE queue=? AND id=?", (queue, job_id)),
            ("SELECT record FROM done WHERE queue=? AND id=? AND expires>?", (queue, job_id, now_ms()))])
        rows = sorted(rows, key=lambda r: r[0], reverse=True)[:1]
        if rows and rows[0][0] == HELD:
            return {"state": "running", "envelope": rows[0][2], "consumer": rows[0][3]}
        if done:
            return {"state": "done", **json.loads(done[0][0] or "{}")}
        if not rows:
            return None
        state, order, env, _, error = rows[0]
        if state == FAILED:
            return {"state": "failed", "envelope": env, "error": json.loads(error or "{}")}
        extra = {"last_error": json.loads(error)} if error else {}
        if state == SCHED:
            return {"state": "scheduled", "envelope": env, "due_ms": order, **extra}
        return {"state": "ready", "envelope": env, **extra}

    def heartbeat(self, node_id, info, ttl):
        now = now_ms()
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO node(id, info, expires) VALUES (?,?,?)",
                       (node_id, json.dumps(info), now + int(ttl * 1000)))
            db.execute("DELETE FROM node WHERE expires < ?", (now,))
            # Done records past their result_ttl: most went with later acks (db.py's
            # _prune_done); the rest of them here, on the node's timer.
            db.execute("DELETE FROM done WHERE expires < ?", (now,))
            freed = upkeep.give_back(db)
        self._checkpoint(force=bool(freed))

    def nodes(self):
        return [json.loads(r[0]) for r in self._read("SELECT info FROM node WHERE expires >= ? ORDER BY id",
                                                     (now_ms(),))]

    def forget_node(self, node_id):
        with self._write() as db:
            db.execute("DELETE FROM node WHERE id=?", (node_id,))

    def add_queues(self, names):
        if names:
            with self._write() as db:
                db.executemany("INSERT OR IGNORE INTO queue(name) VALUES (?)", [(n,) for n in names])

    def queues(self):
        return [r[0] for r in self._read("SELECT name FROM queue ORDER BY name")]

    def ticks(self, queue):
        return {name: (last, fired) for name, last, fired in
                self._read("SELECT name, last, fired FROM tick WHERE queue=?", (queue,))}

    def promote_all(self, queue):
        """Make every delayed job of `queue` due now (inline execution: nobody waits)."""
        with self._write() as db:
            db.execute("UPDATE job SET ord = 0 WHERE queue=? AND state=?", (queue, SCHED))
