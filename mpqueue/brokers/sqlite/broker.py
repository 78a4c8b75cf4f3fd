"""The SQLite broker: the Redis broker's semantics in one file on one host.

The job lifecycle is here, each state change one transaction (db.py has the
data model and the write path, wake.py the wake-ups, inspection.py what
mpqctl reads and administers, history.py the throughput history).
"""
from __future__ import annotations

import os

from ...core import envelope as jobmod
from ..base import Broker, BrokerError, Held, Reserved, Tick
from .db import FAILED, HELD, READY, SCHED, Database, now_ms
from .history import History
from .inspection import Inspection
from .rate import RateGate
from .wake import FifoJobWatch, FifoWaiter, wake_modes


class SQLiteBroker(Inspection, History, Database, Broker):
    def __init__(self, url: str, **_ignored):
        Database.__init__(self, url)      # checks the data format: see db.py's _create_schema
        self.url = url

    def check_format(self):
        return self.data_format

    # -- producers
    def push(self, queue, items):
        wake, dups = False, []
        with self._write() as db:
            now, ready_before, ords = now_ms(), None, {}
            rows, callers = [], set()
            for pos, item in enumerate(items):
                envelope = item.envelope
                if item.caller_id and not self._take_caller_id(db, queue, item.caller_id, callers):
                    dups.append(pos)
                    continue
                head = jobmod.header(envelope)
                job_id = head.id if head else "bad-" + os.urandom(6).hex()
                prio = head.priority if head else 0
                if item.delay_ms():
                    due = now + item.delay_ms()
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
        return dups

    @staticmethod
    def _take_caller_id(db, queue, job_id, callers: set) -> bool:
        """A caller-chosen id is free unless a job with it waits or runs (or an earlier
        item of this push has it); a free one drops the id's old done or failed record."""
        if job_id in callers or db.execute("SELECT 1 FROM job WHERE queue=? AND id=? AND state IN (?,?,?) LIMIT 1",
                                           (queue, job_id, READY, SCHED, HELD)).fetchone():
            return False
        callers.add(job_id)
        db.execute("DELETE FROM job WHERE queue=? AND id=? AND state=?", (queue, job_id, FAILED))
        db.execute("DELETE FROM done WHERE queue=? AND id=?", (queue, job_id))
        return True

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
            late = row is None or now - tick_ms > grace_ms
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
    def reserve(self, queue, consumer, count, lease, acks=(), *, leave_idle=False, join_idle=False, rate=None):
        out, next_due = [], None
        with self._write() as db:
            acked = self._ack(db, queue, acks)
            if count > 0:
                out, next_due = self._reserve(db, queue, consumer, count, lease, rate)
        if acked:
            self._ended(queue, acked)
        return out, next_due

    def _reserve(self, db, queue, consumer, count, lease, rate):
        out, next_due = [], None
        now = now_ms()
        self._promote(db, queue, now)
        if self._paused(db, queue):
            count = 0                    # paused: due jobs become ready, none is reserved
        gate = RateGate(db, queue, rate, now) if rate and count else None
        asked, count = count, gate.allowed(count) if gate else count
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
        if gate:
            opens = gate.took(len(rows), cut=count < asked and self._has_ready(db, queue))
            if count < asked:            # the limit cut it: look again when it lets the next job through
                next_due = opens if next_due is None else min(next_due, opens)
        return out, next_due

    def _ack(self, db, queue, acks) -> list[str]:
        """The ids acknowledged (the others' tokens no longer own them)."""
        acked, done, now = [], 0, now_ms()
        for a in acks:
            cur = db.execute("DELETE FROM job WHERE queue=? AND id=? AND state=? AND token=?",
                             (queue, a.id, HELD, a.token))
            if cur.rowcount:
                acked.append(a.id)
                request = self._cancel_request(db, queue, a.id)
                if request is not None:         # it ended after a cancel request: cancelled, whatever it returned
                    self._cancelled(db, queue, a.id, request[0], "running")
                    continue
                done += 1
                if a.ttl > 0:
                    db.execute("INSERT OR REPLACE INTO done(queue, id, record, expires) VALUES (?,?,?,?)",
                               (queue, a.id, a.record, now + a.ttl * 1000))
        if done:
            db.execute("INSERT INTO stats(queue, done) VALUES (?, ?) "
                       "ON CONFLICT(queue) DO UPDATE SET done = done + excluded.done", (queue, done))
            self._prune_done(db, now, done)
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
            acked = self._ack(db, queue, acks)
        if acked:
            self._ended(queue, acked)
        return len(acked)

    def _settled_as_cancelled(self, db, queue, job_id, rowid) -> str | None:
        """A reserved job being settled (retry, release, fail) after a cancel request
        ends as cancelled instead: no retry, no failure hook. Returns what the
        request asked ('ask' or 'kill'), or None when there was none."""
        request = self._cancel_request(db, queue, job_id)
        if request is None:
            return None
        db.execute("DELETE FROM job WHERE rowid=?", (rowid,))
        self._cancelled(db, queue, job_id, request[0], "running")
        return request[1]

    def retry(self, queue, job_id, token, delay, error):
        wake = ended = False
        with self._write() as db:
            row = self._take_held(db, queue, job_id, token)
            if row is None:
                return False
            rowid, env = row
            ended = self._settled_as_cancelled(db, queue, job_id, rowid)
            if not ended:
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
        if ended:
            self._ended(queue, [job_id])
        return ended or True

    def release(self, queue, job_id, token):
        wake = ended = False
        with self._write() as db:
            row = self._take_held(db, queue, job_id, token)
            if row is None:
                return False
            rowid, env = row
            ended = self._settled_as_cancelled(db, queue, job_id, rowid)
            if not ended:
                head = jobmod.header(env)
                prio = head.priority if head else 0
                if head:
                    env = jobmod.with_attempts(head, max(0, head.attempts - 1))
                wake = not self._has_ready(db, queue)
                db.execute("UPDATE job SET state=?, ord=?, token=NULL, consumer=NULL, env=? WHERE rowid=?",
                           (READY, self._ord(db, queue, prio, front=True), env, rowid))
        if wake:
            self._wake(queue)
        if ended:
            self._ended(queue, [job_id])
        return ended or True

    def fail(self, queue, job_id, token, error, hook=None):
        wake = False
        with self._write() as db:
            row = self._take_held(db, queue, job_id, token)
            if row is None:
                return False
            ended = self._settled_as_cancelled(db, queue, job_id, row[0])
            if not ended:
                wake = self._fail(db, queue, job_id, row[0], error, hook)
        if wake:
            self._wake(queue)
        self._ended(queue, [job_id])
        return ended or True

    def _fail(self, db, queue, job_id, rowid, error, hook) -> bool:
        """To the failed store, with its failure-hook job; True if consumers need waking."""
        db.execute("UPDATE job SET state=?, ord=?, token=NULL, consumer=NULL, error=? WHERE rowid=?",
                   (FAILED, now_ms(), error, rowid))
        db.execute("INSERT INTO stats(queue, failed) VALUES (?, 1) "
                   "ON CONFLICT(queue) DO UPDATE SET failed = failed + 1", (queue,))
        if not hook:
            return False
        head = jobmod.header(hook)
        wake = not self._has_ready(db, queue)
        db.execute("INSERT INTO job(queue, id, state, ord, env) VALUES (?,?,?,?,?)",
                   (queue, head.id if head else "hook-" + os.urandom(6).hex(), READY, self._ord(db, queue, 9), hook))
        return wake

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

    # -- job handles
    def watch(self, queue, job_id):
        d = self._end_dir(queue, job_id)
        if d is None:
            raise BrokerError("sqlite: an in-memory database has no channel to wait on")
        try:
            return FifoJobWatch(d, wake_modes(self.path))
        except OSError as exc:
            raise BrokerError(f"sqlite: wake-up channel in {d}: {exc}") from exc

    def cancel(self, queue, job_id, envelope, ttl, kill=False):
        """One transaction: a waiting job is removed, a running one gets a request. (The
        transaction sees the truth, so `envelope`, Redis's hint, is not needed.)"""
        mode, ttl = "kill" if kill else "ask", max(0, int(ttl))
        with self._write() as db:
            row = db.execute("SELECT rowid, state FROM job WHERE queue=? AND id=? AND state IN (?,?,?) LIMIT 1",
                             (queue, job_id, READY, SCHED, HELD)).fetchone()
            if row is not None and row[1] == HELD:
                # 'kill' wins over an earlier 'ask', never the other way round
                db.execute("INSERT INTO cancel(queue, id, mode, ttl) VALUES (?,?,?,?) ON CONFLICT(queue, id) "
                           "DO UPDATE SET mode = CASE WHEN excluded.mode = 'kill' THEN 'kill' ELSE mode END, "
                           "ttl = excluded.ttl", (queue, job_id, mode, ttl))
                return "requested"
            if row is not None:
                db.execute("DELETE FROM job WHERE rowid=?", (row[0],))
                self._cancelled(db, queue, job_id, ttl, "ready" if row[1] == READY else "scheduled")
                outcome = "cancelled"
            else:
                outcome = self._end_of(db, queue, job_id)
        if outcome == "cancelled":
            self._ended(queue, [job_id])
        return outcome

    @staticmethod
    def _end_of(db, queue, job_id) -> str:
        done = db.execute("SELECT record FROM done WHERE queue=? AND id=? AND expires>?",
                          (queue, job_id, now_ms())).fetchone()
        if done:
            return "was-cancelled" if '"state":"cancelled"' in done[0] else "done"
        failed = db.execute("SELECT 1 FROM job WHERE queue=? AND id=? AND state=?", (queue, job_id, FAILED)).fetchone()
        return "failed" if failed else "unknown"

    def cancel_requested(self, queue, job_id):
        rows = self._read("SELECT mode FROM cancel WHERE queue=? AND id=?", (queue, job_id))
        return rows[0][0] if rows else None

    def cancel_requests(self, queue):
        return dict(self._read("SELECT id, mode FROM cancel WHERE queue=?", (queue,)))
