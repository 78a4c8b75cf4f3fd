"""The SQLite broker: the Redis broker's semantics in one file on one host.

The job lifecycle is here, each state change one transaction (db.py has the
data model and the write path, wake.py the wake-ups, inspection.py what
mpqctl reads and administers).
"""
from __future__ import annotations

import os

from ...core import envelope as jobmod
from ..base import Broker, BrokerError, Held, Reserved, Tick
from .db import FAILED, HELD, READY, SCHED, Database, now_ms
from .inspection import Inspection
from .wake import FifoWaiter, wake_modes


class SQLiteBroker(Inspection, Database, Broker):
    def __init__(self, url: str, **_ignored):
        Database.__init__(self, url)
        self.url = url

    # -- producers
    def push(self, queue, items):
        wake = False
        with self._write() as db:
            now, ready_before, ords = now_ms(), None, {}
            rows = []
            for envelope, priority, delay in items:
                head = jobmod.header(envelope)
                job_id = head.id if head else "bad-" + os.urandom(6).hex()
                prio = head.priority if head else 0
                if delay and delay > 0:
                    due = now + int(round(delay * 1000))
                    wake = self._schedule_sooner(db, queue, due) or wake
                    db.execute("INSERT INTO job(queue, id, state, ord, env) VALUES (?,?,?,?,?)",
                               (queue, job_id, SCHED, due, envelope))
                    continue
                if ready_before is None:
                    ready_before = self._has_ready(db, queue)
                    wake = wake or not ready_before
                ords[prio] = ords[prio] + 1 if prio in ords else self._ord(db, queue, prio)
                rows.append((queue, job_id, READY, ords[prio], envelope))
            db.executemany("INSERT INTO job(queue, id, state, ord, env) VALUES (?,?,?,?,?)", rows)
        if wake:
            self._wake(queue)

    def tick(self, queue, name, tick_ms, envelope, priority, grace_ms):
        """tick.lua's rules, in one transaction (a file created before schedules
        existed gets its tick table when opened)."""
        with self._write() as db:
            now = now_ms()
            row = db.execute("SELECT last, fired FROM tick WHERE queue=? AND name=?", (queue, name)).fetchone()
            last, fired = row if row else (-1, 0)
            if last >= tick_ms:
                return Tick("taken", last, now)
            if tick_ms > now:
                return Tick("early", last, now)
            late = now - tick_ms > grace_ms
            db.execute("INSERT OR REPLACE INTO tick(queue, name, last, fired) VALUES (?,?,?,?)",
                       (queue, name, tick_ms, fired if late else tick_ms))
            if late:
                return Tick("skipped" if row else "new", last, now)
            head = jobmod.header(envelope)
            wake = not self._has_ready(db, queue)
            db.execute("INSERT INTO job(queue, id, state, ord, env) VALUES (?,?,?,?,?)",
                       (queue, head.id, READY, self._ord(db, queue, priority), envelope))
        if wake:
            self._wake(queue)
        return Tick("fired", last, now)

    # -- consumers
    def reserve(self, queue, consumer, count, lease, acks=(), *, leave_idle=False, join_idle=False):
        out, next_due = [], None
        with self._write() as db:
            self._ack(db, queue, acks)
            if count <= 0:
                return [], None
            now = now_ms()
            self._promote(db, queue, now)
            rows = db.execute("SELECT rowid, env FROM job WHERE queue=? AND state=? ORDER BY ord LIMIT ?",
                              (queue, READY, count)).fetchall()
            prefix = os.urandom(6).hex() + "."
            deadline = now + int(lease * 1000)
            for i, (rowid, env) in enumerate(rows):
                token = prefix + str(i + 1)
                head = jobmod.header(env)
                if head:
                    env = jobmod.with_attempts(head, head.attempts + 1)
                else:  # junk someone pushed: give it a header so a worker can fail it as bad_payload
                    job_id = db.execute("SELECT id FROM job WHERE rowid=?", (rowid,)).fetchone()[0]
                    env = f"{job_id} 1 0 {env}"
                db.execute("UPDATE job SET state=?, ord=?, token=?, consumer=?, env=? WHERE rowid=?",
                           (HELD, deadline, token, consumer, env, rowid))
                out.append(Reserved(token, env))
            first = self._earliest(db, queue)
            if first is not None:
                next_due = max(0, first - now) / 1000.0
        return out, next_due

    def _ack(self, db, queue, acks) -> int:
        acked = 0
        for a in acks:
            cur = db.execute("DELETE FROM job WHERE queue=? AND id=? AND state=? AND token=?",
                             (queue, a.id, HELD, a.token))
            if cur.rowcount:
                acked += 1
                if a.ttl > 0:
                    db.execute("INSERT OR REPLACE INTO done(queue, id, record, expires) VALUES (?,?,?,?)",
                               (queue, a.id, a.record, now_ms() + a.ttl * 1000))
        if acked:
            db.execute("INSERT INTO stats(queue, done) VALUES (?, ?) "
                       "ON CONFLICT(queue) DO UPDATE SET done = done + excluded.done", (queue, acked))
        return acked

    def _promote(self, db, queue, now) -> None:
        due = db.execute("SELECT rowid, env FROM job WHERE queue=? AND state=? AND ord<=? ORDER BY ord LIMIT 1000",
                         (queue, SCHED, now)).fetchall()
        ords = {}
        for rowid, env in due:
            head = jobmod.header(env)
            prio = head.priority if head else 0
            ords[prio] = ords[prio] + 1 if prio in ords else self._ord(db, queue, prio)
            db.execute("UPDATE job SET state=?, ord=? WHERE rowid=?", (READY, ords[prio], rowid))

    def ack(self, queue, acks):
        if not acks:
            return 0
        with self._write() as db:
            return self._ack(db, queue, acks)

    def retry(self, queue, job_id, token, delay, error):
        wake = False
        with self._write() as db:
            row = self._take_held(db, queue, job_id, token)
            if row is None:
                return False
            rowid, env = row
            if delay > 0:
                due = now_ms() + int(round(delay * 1000))
                wake = self._schedule_sooner(db, queue, due)
                state, order = SCHED, due
            else:
                head = jobmod.header(env)
                wake = not self._has_ready(db, queue)
                state, order = READY, self._ord(db, queue, head.priority if head else 0)
            db.execute("UPDATE job SET state=?, ord=?, token=NULL, consumer=NULL, error=? WHERE rowid=?",
                       (state, order, error, rowid))
        if wake:
            self._wake(queue)
        return True

    def release(self, queue, job_id, token):
        with self._write() as db:
            row = self._take_held(db, queue, job_id, token)
            if row is None:
                return False
            rowid, env = row
            head = jobmod.header(env)
            prio = head.priority if head else 0
            if head:
                env = jobmod.with_attempts(head, max(0, head.attempts - 1))
            wake = not self._has_ready(db, queue)
            db.execute("UPDATE job SET state=?, ord=?, token=NULL, consumer=NULL, env=? WHERE rowid=?",
                       (READY, self._ord(db, queue, prio, front=True), env, rowid))
        if wake:
            self._wake(queue)
        return True

    def fail(self, queue, job_id, token, error, hook=None):
        with self._write() as db:
            row = self._take_held(db, queue, job_id, token)
            if row is None:
                return False
            db.execute("UPDATE job SET state=?, ord=?, token=NULL, consumer=NULL, error=? WHERE rowid=?",
                       (FAILED, now_ms(), error, row[0]))
            db.execute("INSERT INTO stats(queue, failed) VALUES (?, 1) "
                       "ON CONFLICT(queue) DO UPDATE SET failed = failed + 1", (queue,))
            wake = False
            if hook:
                head = jobmod.header(hook)
                wake = not self._has_ready(db, queue)
                db.execute("INSERT INTO job(queue, id, state, ord, env) VALUES (?,?,?,?,?)",
                           (queue, head.id if head else "hook-" + os.urandom(6).hex(), READY,
                            self._ord(db, queue, 9), hook))
        if wake:
            self._wake(queue)
        return True

    def extend(self, queue, job_id, token, lease):
        with self._write() as db:
            cur = db.execute("UPDATE job SET ord=? WHERE queue=? AND id=? AND state=? AND token=?",
                             (now_ms() + int(lease * 1000), queue, job_id, HELD, token))
            return cur.rowcount == 1

    def renew(self, queue, consumers, lease):
        if not consumers:
            return 0
        marks = ",".join("?" * len(consumers))
        with self._write() as db:
            cur = db.execute(f"UPDATE job SET ord = max(ord, ?) WHERE queue=? AND state=? AND consumer IN ({marks})",
                             (now_ms() + int(lease * 1000), queue, HELD, *consumers))
            return cur.rowcount

    def held(self, queue):
        rows = self._read("SELECT id, token, consumer, env FROM job WHERE queue=? AND state=?", (queue, HELD))
        return [Held(*r) for r in rows]

    def expired(self, queue, limit=100):
        rows = self._read("SELECT id, token, consumer, env FROM job WHERE queue=? AND state=? AND ord<=? "
                          "ORDER BY ord LIMIT ?", (queue, HELD, now_ms(), limit))
        return [Held(*r) for r in rows]

    def waiter(self, queue, consumer=None):
        d = self._wake_dir(queue)
        if d is None:
            raise BrokerError("sqlite: an in-memory database has no wake-up channel")
        try:
            return FifoWaiter(d, wake_modes(self.path))
        except OSError as exc:
            raise BrokerError(f"sqlite: wake-up channel in {d}: {exc}") from exc
