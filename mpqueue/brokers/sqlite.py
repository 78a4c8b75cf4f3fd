"""The SQLite broker: the Redis broker's semantics in one file on one host.

Every job of every queue is one row of `job`; a state change is an UPDATE of
that row inside one write transaction, so a process killed at any point leaves
each job where it was or where it was going. The data model (schema.sql):

    state  ord (one index on (queue, state, ord) serves every lookup)
    READY  (9 - priority) << 48 | seq   priority first, then FIFO
    SCHED  due time, ms                 delayed jobs and retries
    HELD   lease deadline, ms           reserved: token and consumer set
    FAILED time of failure, ms          the failed store

Writers serialize on an flock beside the database before BEGIN IMMEDIATE: the
kernel wakes the next writer the moment the lock is free, where SQLite's own
busy handler would sleep and poll. Time is the host's clock (every process of a
service shares it; an SQLite file is for one host, never a network share).

Wake-ups: each waiting consumer owns a FIFO in `<db>-wake/<queue hash>/`; a
state change that makes work available writes a byte to every FIFO of the queue
after its commit. A FIFO whose owner died refuses writers (ENXIO) and is removed.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import stat
import time
from urllib.parse import parse_qs, urlsplit

from .base import Broker, BrokerError, Held, Reserved, Waiter

READY, SCHED, HELD, FAILED = 0, 1, 2, 3
PRIO_SHIFT = 48
SEQ_START = 1 << 47          # room to append and to put released jobs in front
SYNCHRONOUS = ("normal", "full")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _band(prio: int) -> tuple[int, int]:
    """The ord range of a priority's ready jobs."""
    low = (9 - prio) << PRIO_SHIFT
    return low, low + (1 << PRIO_SHIFT)


def _header(env: str):
    """(id, attempts, priority, body) of an envelope, or None for junk."""
    parts = env.split(" ", 3)
    if len(parts) == 4 and parts[1].isdigit() and len(parts[2]) == 1 and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2]), parts[3]
    return None


def parse_url(url: str) -> tuple[str, str]:
    """sqlite:///abs/path.db or sqlite:relative.db (?synchronous=normal|full)
    -> (path, synchronous)."""
    parts = urlsplit(url)
    path = (parts.netloc + parts.path) if parts.netloc else parts.path
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if not path:
        raise BrokerError(f"broker: no database path in {url!r} (e.g. sqlite:///var/lib/mpqueue/orders.db)")
    query = parse_qs(parts.query)
    sync = query.pop("synchronous", ["normal"])[-1].lower()
    if sync not in SYNCHRONOUS or query:
        raise BrokerError(f"broker: {url!r}: the only option is synchronous=normal|full")
    return path, sync


class FifoWaiter(Waiter):
    """A FIFO of our own in the queue's wake directory, opened read-write so it
    never reports end-of-file while no writer has it open."""

    def __init__(self, directory: str, modes: tuple[int, int]):
        dir_mode, fifo_mode = modes
        for d in (os.path.dirname(directory), directory):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d)
                os.chmod(d, dir_mode)          # mkdir's mode is cut by the umask
        name = os.urandom(8).hex()
        hidden = os.path.join(directory, "." + name)
        self.path = os.path.join(directory, name)
        # Made under a hidden name and renamed once open: a waker never sees it unopened
        # (it would take it for the FIFO of a dead process and remove it).
        os.mkfifo(hidden, fifo_mode)
        self._fd = os.open(hidden, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        os.chmod(hidden, fifo_mode)
        os.rename(hidden, self.path)

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> list:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fd, 4096):
                pass
        return []

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _wake_modes(db_path: str) -> tuple[int, int]:
    """(directory mode, FIFO mode) for wake files: whoever may write the database may
    wake its consumers (write the FIFOs), whoever may read it may list them."""
    try:
        mode = stat.S_IMODE(os.stat(db_path).st_mode)
    except OSError:
        mode = 0o600
    fifo = (mode & 0o666) | 0o600
    readers = mode & 0o044
    return 0o700 | readers | (readers >> 2), fifo


def wake_fifos(directory: str) -> None:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:          # nobody reads it: its owner died
                with contextlib.suppress(OSError):
                    os.unlink(path)
            continue
        try:
            os.write(fd, b"1")
        except OSError:
            pass                                  # full: a wake-up is pending anyway
        finally:
            os.close(fd)


class SQLiteBroker(Broker):
    def __init__(self, url: str, **_ignored):
        self.url = url
        path, sync = parse_url(url)
        self.memory = path == ":memory:"
        self.path = path if self.memory else os.path.abspath(path)
        self._pid = os.getpid()
        self._lock = None
        try:
            if not self.memory:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                # Read-only is enough for flock, so a lock file another user made still works.
                self._lock = os.open(self.path + "-lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout = 30000")
            if not self.memory:
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute(f"PRAGMA synchronous = {sync.upper()}")
            with self._write() as db:
                _create_schema(db)
        except (OSError, sqlite3.Error) as exc:
            raise BrokerError(f"sqlite: cannot open {self.path}: {exc}") from exc
        self._wake_dirs: dict[str, str] = {}

    # -- plumbing
    @contextlib.contextmanager
    def _write(self):
        """One write transaction, serialized among every process by the flock."""
        try:
            if self._lock is not None:
                fcntl.flock(self._lock, fcntl.LOCK_EX)
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.conn
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                self.conn.execute("COMMIT")
            finally:
                if self._lock is not None:
                    fcntl.flock(self._lock, fcntl.LOCK_UN)
        except sqlite3.Error as exc:
            if self.conn.in_transaction:       # e.g. COMMIT failed on a full disk
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise BrokerError(f"sqlite: {exc.__class__.__name__}: {exc}") from exc

    def _read(self, sql: str, args=()) -> list:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise BrokerError(f"sqlite: {exc.__class__.__name__}: {exc}") from exc

    def _wake_dir(self, queue: str) -> str | None:
        if self.memory:
            return None
        d = self._wake_dirs.get(queue)
        if d is None:
            d = self._wake_dirs[queue] = os.path.join(
                self.path + "-wake", hashlib.sha1(queue.encode()).hexdigest()[:16])
        return d

    def _wake(self, queue: str) -> None:
        d = self._wake_dir(queue)
        if d:
            wake_fifos(d)

    # -- the state changes, each inside a caller's transaction
    @staticmethod
    def _has_ready(db, queue) -> bool:
        return db.execute("SELECT 1 FROM job WHERE queue=? AND state=? LIMIT 1", (queue, READY)).fetchone() is not None

    @staticmethod
    def _ord(db, queue, prio, front=False) -> int:
        low, high = _band(prio)
        agg = "min" if front else "max"
        row = db.execute(f"SELECT {agg}(ord) FROM job WHERE queue=? AND state=? AND ord>=? AND ord<?",
                         (queue, READY, low, high)).fetchone()
        if row[0] is None:
            return low + SEQ_START
        return row[0] - 1 if front else row[0] + 1

    @staticmethod
    def _earliest(db, queue):
        return db.execute("SELECT min(ord) FROM job WHERE queue=? AND state=?", (queue, SCHED)).fetchone()[0]

    def _schedule_sooner(self, db, queue, due) -> bool:
        """True when `due` will be the earliest delayed job: waiters must re-time."""
        first = self._earliest(db, queue)
        return first is None or due < first

    @staticmethod
    def _take_held(db, queue, job_id, token):
        """The fence: the reservation's row if `token` still owns it."""
        return db.execute("SELECT rowid, env FROM job WHERE queue=? AND id=? AND state=? AND token=?",
                          (queue, job_id, HELD, token)).fetchone()

    # -- producers
    def push(self, queue, items):
        wake = False
        with self._write() as db:
            now, ready_before, ords = _now_ms(), None, {}
            rows = []
            for envelope, priority, delay in items:
                head = _header(envelope)
                job_id = head[0] if head else "bad-" + os.urandom(6).hex()
                prio = head[2] if head else 0
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

    # -- consumers
    def reserve(self, queue, consumer, count, lease, acks=(), idle=""):
        out, next_due = [], None
        with self._write() as db:
            self._ack(db, queue, acks)
            if count <= 0:
                return [], None
            now = _now_ms()
            self._promote(db, queue, now)
            rows = db.execute("SELECT rowid, env FROM job WHERE queue=? AND state=? ORDER BY ord LIMIT ?",
                              (queue, READY, count)).fetchall()
            prefix = os.urandom(6).hex() + "."
            deadline = now + int(lease * 1000)
            for i, (rowid, env) in enumerate(rows):
                token = prefix + str(i + 1)
                head = _header(env)
                if head:
                    job_id, attempts, prio, body = head
                    env = f"{job_id} {attempts + 1} {prio} {body}"
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
                               (queue, a.id, a.record, _now_ms() + a.ttl * 1000))
        if acked:
            db.execute("INSERT INTO stats(queue, done) VALUES (?, ?) "
                       "ON CONFLICT(queue) DO UPDATE SET done = done + excluded.done", (queue, acked))
        return acked

    def _promote(self, db, queue, now) -> None:
        due = db.execute("SELECT rowid, env FROM job WHERE queue=? AND state=? AND ord<=? ORDER BY ord LIMIT 1000",
                         (queue, SCHED, now)).fetchall()
        ords = {}
        for rowid, env in due:
            head = _header(env)
            prio = head[2] if head else 0
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
                due = _now_ms() + int(round(delay * 1000))
                wake = self._schedule_sooner(db, queue, due)
                state, order = SCHED, due
            else:
                head = _header(env)
                wake = not self._has_ready(db, queue)
                state, order = READY, self._ord(db, queue, head[2] if head else 0)
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
            head = _header(env)
            prio = 0
            if head:
                jid, attempts, prio, body = head
                env = f"{jid} {max(0, attempts - 1)} {prio} {body}"
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
                       (FAILED, _now_ms(), error, row[0]))
            db.execute("INSERT INTO stats(queue, failed) VALUES (?, 1) "
                       "ON CONFLICT(queue) DO UPDATE SET failed = failed + 1", (queue,))
            wake = False
            if hook:
                head = _header(hook)
                wake = not self._has_ready(db, queue)
                db.execute("INSERT INTO job(queue, id, state, ord, env) VALUES (?,?,?,?,?)",
                           (queue, head[0] if head else "hook-" + os.urandom(6).hex(), READY,
                            self._ord(db, queue, 9), hook))
        if wake:
            self._wake(queue)
        return True

    def extend(self, queue, job_id, token, lease):
        with self._write() as db:
            cur = db.execute("UPDATE job SET ord=? WHERE queue=? AND id=? AND state=? AND token=?",
                             (_now_ms() + int(lease * 1000), queue, job_id, HELD, token))
            return cur.rowcount == 1

    def held(self, queue):
        rows = self._read("SELECT id, token, consumer, env FROM job WHERE queue=? AND state=?", (queue, HELD))
        return [Held(*r) for r in rows]

    def expired(self, queue, limit=100):
        rows = self._read("SELECT id, token, consumer, env FROM job WHERE queue=? AND state=? AND ord<=? "
                          "ORDER BY ord LIMIT ?", (queue, HELD, _now_ms(), limit))
        return [Held(*r) for r in rows]

    def waiter(self, queue, consumer=None):
        d = self._wake_dir(queue)
        if d is None:
            raise BrokerError("sqlite: an in-memory database has no wake-up channel")
        try:
            return FifoWaiter(d, _wake_modes(self.path))
        except OSError as exc:
            raise BrokerError(f"sqlite: wake-up channel in {d}: {exc}") from exc

    # -- inspection and administration
    def counts(self, queue):
        by_state = dict(self._read("SELECT state, count(*) FROM job WHERE queue=? GROUP BY state", (queue,)))
        stats = self._read("SELECT done, failed FROM stats WHERE queue=?", (queue,))
        done, failed = stats[0] if stats else (0, 0)
        return {"ready": by_state.get(READY, 0), "scheduled": by_state.get(SCHED, 0),
                "running": by_state.get(HELD, 0), "failed": by_state.get(FAILED, 0),
                "done_total": done, "failed_total": failed}

    def ready_count(self, queue):
        return self._read("SELECT count(*) FROM job WHERE queue=? AND state=?", (queue, READY))[0][0]

    def failed(self, queue, limit=100):
        return [tuple(r) for r in self._read(
            "SELECT id, env, error FROM job WHERE queue=? AND state=? ORDER BY ord LIMIT ?", (queue, FAILED, limit))]

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
                head = _header(env)
                if not head:
                    continue
                jid, _, prio, body = head
                db.execute("UPDATE job SET state=?, ord=?, env=?, error=NULL WHERE rowid=?",
                           (READY, self._ord(db, queue, prio), f"{jid} 0 {prio} {body}", rowid))
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

    def find(self, queue, job_id):
        rows = self._read("SELECT state, ord, env, consumer, error FROM job WHERE queue=? AND id=? "
                          "ORDER BY state DESC LIMIT 1", (queue, job_id))
        if rows and rows[0][0] == HELD:
            return {"state": "running", "envelope": rows[0][2], "consumer": rows[0][3]}
        done = self._read("SELECT record FROM done WHERE queue=? AND id=? AND expires>?", (queue, job_id, _now_ms()))
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
        now = _now_ms()
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO node(id, info, expires) VALUES (?,?,?)",
                       (node_id, json.dumps(info), now + int(ttl * 1000)))
            db.execute("DELETE FROM node WHERE expires < ?", (now,))
            # Done records past their result_ttl go here, on the node's timer, off the job path.
            db.execute("DELETE FROM done WHERE expires < ?", (now,))

    def nodes(self):
        return [json.loads(r[0]) for r in self._read("SELECT info FROM node WHERE expires >= ? ORDER BY id",
                                                     (_now_ms(),))]

    def add_queues(self, names):
        if names:
            with self._write() as db:
                db.executemany("INSERT OR IGNORE INTO queue(name) VALUES (?)", [(n,) for n in names])

    def queues(self):
        return [r[0] for r in self._read("SELECT name FROM queue ORDER BY name")]

    def ping(self):
        self._read("SELECT 1")
        if not self.memory and not os.path.exists(self.path):
            raise BrokerError(f"sqlite: {self.path} has been removed")

    def close(self):
        if os.getpid() != self._pid:
            return          # a forked child must not close its parent's connection
        with contextlib.suppress(Exception):
            self.conn.close()
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock)


SCHEMA = """
CREATE TABLE IF NOT EXISTS job (
    queue    TEXT NOT NULL,
    id       TEXT NOT NULL,
    state    INTEGER NOT NULL,      -- 0 ready, 1 scheduled, 2 held, 3 failed
    ord      INTEGER NOT NULL,      -- see the module docstring
    env      TEXT NOT NULL,         -- "<id> <attempts> <priority> <json body>"
    token    TEXT,                  -- held: the reservation's fencing token
    consumer TEXT,                  -- held: "<node>/<pid>"
    error    TEXT                   -- failed: the error, waiting: the last error
);
CREATE INDEX IF NOT EXISTS job_order ON job(queue, state, ord);
CREATE INDEX IF NOT EXISTS job_id ON job(queue, id);
CREATE TABLE IF NOT EXISTS done (
    queue TEXT NOT NULL, id TEXT NOT NULL, record TEXT NOT NULL, expires INTEGER NOT NULL,
    PRIMARY KEY (queue, id)
);
CREATE TABLE IF NOT EXISTS stats (
    queue TEXT PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS node (id TEXT PRIMARY KEY, info TEXT NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queue (name TEXT PRIMARY KEY);
"""


def _create_schema(db) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
