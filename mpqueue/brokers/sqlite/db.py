"""The SQLite broker's storage: one WAL database file, its data model, and the
one way to write it (an flock-serialized BEGIN IMMEDIATE transaction).

Every job of every queue is one row of `job`; a state change is an UPDATE of
that row inside one write transaction, so a process killed at any point leaves
each job where it was or where it was going. The data model (SCHEMA below):

    state  ord (one index on (queue, state, ord) serves every lookup)
    READY  (9 - priority) << 48 | seq   priority first, then FIFO
    SCHED  due time, ms                 delayed jobs and retries
    HELD   lease deadline, ms           reserved: token and consumer set
    FAILED time of failure, ms          the failed store

Counts come from `job_count`, kept by triggers (upkeep.py, with the WAL's and
the file's upkeep); a lookup by id goes down the `job_id` index.

Writers serialize on an flock beside the database before BEGIN IMMEDIATE: the
kernel wakes the next writer the moment the lock is free, where SQLite's own
busy handler would sleep and poll. Time is the host's clock (every process of a
service shares it; an SQLite file is for one host, never a network share).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from urllib.parse import parse_qs

from ...core.redis_url import split_url
from .. import data_format
from ..base import BrokerError
from . import upkeep
from .wake import wake_fifos

READY, SCHED, HELD, FAILED = 0, 1, 2, 3
PRIO_SHIFT = 48
SEQ_START = 1 << 47          # room to append and to put released jobs in front
SYNCHRONOUS = ("normal", "full")
BUSY_MS = 30000
PRUNE_EXTRA = 16          # expired done records dropped by a write beyond the ones it adds


def now_ms() -> int:
    return int(time.time() * 1000)


def band(prio: int) -> tuple[int, int]:
    """The ord range of a priority's ready jobs."""
    low = (9 - prio) << PRIO_SHIFT
    return low, low + (1 << PRIO_SHIFT)


def parse_url(url: str) -> tuple[str, str]:
    """sqlite:///abs/path.db or sqlite:relative.db (?synchronous=normal|full)
    -> (path, synchronous)."""
    parts = split_url(url)
    path = (parts.authority + parts.path) if parts.authority else parts.path
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if not path:
        raise BrokerError(f"broker: no database path in {url!r} (e.g. sqlite:///var/lib/mpqueue/orders.db)")
    query = parse_qs(parts.query)
    sync = query.pop("synchronous", ["normal"])[-1].lower()
    if sync not in SYNCHRONOUS or query:
        raise BrokerError(f"broker: {url!r}: the only option is synchronous=normal|full")
    return path, sync


class Database:
    """The file, its write lock and connection; every write is one transaction."""

    def __init__(self, url: str, **_ignored):
        path, sync = parse_url(url)
        self.memory = path == ":memory:"
        self.path = path if self.memory else os.path.abspath(path)
        self._pid = os.getpid()
        self._lock = None
        self._mutex = threading.RLock()     # threads of a worker with concurrency > 1 share the connection
        self._wal = upkeep.WalGuard(None if self.memory else self.path)
        try:
            fresh = True
            if not self.memory:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                _create_private(self.path)
                fresh = os.path.getsize(self.path) == 0
                # Read-only is enough for flock, so a lock file the group's producers made
                # still works; others can't read it, so they can't take it and stall writers.
                self._lock = os.open(self.path + "-lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                                     0o640)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
            upkeep.prepare_file(self.conn, fresh)         # before WAL mode writes the file's header
            if not self.memory:
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute(f"PRAGMA synchronous = {sync.upper()}")
            with self._write() as db:
                self.data_format = _create_schema(db)
            if not self.memory:
                with self._locked():
                    upkeep.convert_small(self.conn)
        except (OSError, sqlite3.Error) as exc:
            raise BrokerError(f"sqlite: cannot open {self.path}: {exc}") from exc
        except data_format.DataFormatError:
            self.close()
            raise
        self._wake_dirs: dict[str, str] = {}

    # -- plumbing
    @contextlib.contextmanager
    def _write(self):
        """One write transaction, serialized among every process by the flock and
        among this process's threads by the mutex (a flock does not exclude threads
        that share its descriptor, and the connection holds one transaction)."""
        with self._mutex:
            yield from self._write_locked()

    @contextlib.contextmanager
    def _locked(self):
        """The write lock without a transaction (checkpoints, VACUUM)."""
        with self._mutex:
            if self._lock is not None:
                fcntl.flock(self._lock, fcntl.LOCK_EX)
            try:
                yield self.conn
            finally:
                if self._lock is not None:
                    fcntl.flock(self._lock, fcntl.LOCK_UN)

    def _write_locked(self):
        try:
            with self._locked():
                self._wal.before_write(self.conn, BUSY_MS)     # keeps the WAL bounded under steady readers
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.conn
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:       # e.g. COMMIT failed on a full disk
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise BrokerError(f"sqlite: {exc.__class__.__name__}: {exc}") from exc

    def _checkpoint(self, force: bool = False) -> None:
        """The WAL into the file, under the write lock: on the heartbeat's timer, so an
        idle service's WAL goes too, and the file shrinks after a vacuum step."""
        if not self.memory and (force or upkeep.wal_size(self.path) > 0):
            with self._locked():
                upkeep.checkpoint(self.conn, BUSY_MS)

    def _read(self, sql: str, args=()) -> list:
        try:
            with self._mutex:
                return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise BrokerError(f"sqlite: {exc.__class__.__name__}: {exc}") from exc

    def _read_together(self, queries) -> list[list]:
        """Several (sql, args) SELECTs read as one snapshot: one read transaction."""
        try:
            with self._mutex:
                self.conn.execute("BEGIN")
                try:
                    return [self.conn.execute(sql, args).fetchall() for sql, args in queries]
                finally:
                    self.conn.execute("COMMIT")
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

    # -- job handles: callers waiting for a job's end (Client.result) own FIFOs in
    # "<queue's wake directory>.end/<job's hash>"; a job's end wakes only its own
    # watchers, so a million waiting jobs cost a waiter nothing until its job ends.
    # An ending write lists the queue's end directory once (after its commit: a
    # watch made before the commit is there) and wakes the directories of its jobs.
    def _end_dir(self, queue: str, job_id: str) -> str | None:
        d = self._wake_dir(queue)
        return os.path.join(d + ".end", _job_hash(job_id)) if d else None

    def _ended(self, queue: str, job_ids) -> None:
        d = self._wake_dir(queue)
        if not d:
            return
        try:
            watched = set(os.listdir(d + ".end"))
        except FileNotFoundError:
            return
        for job_id in job_ids:
            if _job_hash(job_id) in watched:
                wake_fifos(os.path.join(d + ".end", _job_hash(job_id)), remove_empty=True)

    @staticmethod
    def _cancel_request(db, queue, job_id):
        """(ttl, 'ask' | 'kill') of a standing cancel request of a running job, or None; spends it."""
        row = db.execute("SELECT ttl, mode FROM cancel WHERE queue=? AND id=?", (queue, job_id)).fetchone()
        if row is None:
            return None
        db.execute("DELETE FROM cancel WHERE queue=? AND id=?", (queue, job_id))
        return row[0], row[1]

    @staticmethod
    def _cancelled(db, queue, job_id, ttl, was) -> None:
        """Leave the record of a cancelled job (like a result: `ttl` s)."""
        now = now_ms()
        record = json.dumps({"state": "cancelled", "cancelled_at": round(now / 1000, 3), "was": was},
                            separators=(",", ":"))
        if ttl > 0:
            db.execute("INSERT OR REPLACE INTO done(queue, id, record, expires) VALUES (?,?,?,?)",
                       (queue, job_id, record, now + ttl * 1000))
            Database._prune_done(db, now, 1)

    @staticmethod
    def _prune_done(db, now: int, added: int) -> None:
        """Drop done records past their ttl, a few more than a write adds, down the
        `done_expires` index: they go as they expire, at no cost to a deep queue."""
        db.execute("DELETE FROM done WHERE rowid IN (SELECT rowid FROM done WHERE expires < ? ORDER BY expires "
                   "LIMIT ?)", (now, added + PRUNE_EXTRA))

    # -- the state changes, each inside a caller's transaction
    @staticmethod
    def _paused(db, queue) -> bool:
        return db.execute("SELECT 1 FROM paused WHERE queue=?", (queue,)).fetchone() is not None

    @staticmethod
    def _has_ready(db, queue) -> bool:
        return db.execute("SELECT 1 FROM job WHERE queue=? AND state=? LIMIT 1", (queue, READY)).fetchone() is not None

    @staticmethod
    def _ord(db, queue, prio, front=False) -> int:
        low, high = band(prio)
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
CREATE INDEX IF NOT EXISTS done_expires ON done(expires);
CREATE TABLE IF NOT EXISTS stats (
    queue TEXT PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS node (id TEXT PRIMARY KEY, info TEXT NOT NULL, expires INTEGER NOT NULL);
-- Job handles: a cancel request of a running job ('ask' or 'kill', ttl: its record's life)
CREATE TABLE IF NOT EXISTS cancel (
    queue TEXT NOT NULL, id TEXT NOT NULL, mode TEXT NOT NULL, ttl INTEGER NOT NULL,
    PRIMARY KEY (queue, id)
);
CREATE TABLE IF NOT EXISTS queue (name TEXT PRIMARY KEY);
-- Throughput history (history.py): each queue's totals once a minute, kept a day. Created
-- on opening, like every table here, so a database of an earlier release gains it.
CREATE TABLE IF NOT EXISTS history (
    queue TEXT NOT NULL, at INTEGER NOT NULL, done INTEGER NOT NULL, failed INTEGER NOT NULL,
    PRIMARY KEY (queue, at)
);
-- Paused queues (Broker.pause): reserve takes none of their jobs. Created when a file of
-- v0.1.0 is opened. v0.1.0 itself ignores the table (and so does not honour a pause).
CREATE TABLE IF NOT EXISTS paused (queue TEXT PRIMARY KEY);
-- Rate limits (core/limits.py): the GCRA's theoretical arrival time of each rate-limited
-- queue's next job (ms), and how many reserves the limit cut while jobs waited.
CREATE TABLE IF NOT EXISTS rate (
    queue TEXT PRIMARY KEY, tat REAL NOT NULL, throttled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tick (           -- schedules: the last tick claimed and fired, ms
    queue TEXT NOT NULL, name TEXT NOT NULL, last INTEGER NOT NULL, fired INTEGER NOT NULL,
    PRIMARY KEY (queue, name)
);
"""


def _create_schema(db) -> int:
    """Check the file's data format (data_format.py; user_version 0: no record, as
    v0.1.0 left it, or a new file) before touching anything, then create what is
    missing and record the format, in the caller's one transaction."""
    recorded = db.execute("PRAGMA user_version").fetchone()[0]
    found = data_format.accept(recorded)
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    upkeep.ensure_counters(db)
    if not recorded:
        db.execute(f"PRAGMA user_version = {int(data_format.CURRENT)}")
    return found


def _job_hash(job_id: str) -> str:
    return hashlib.sha1(job_id.encode()).hexdigest()[:16]


def _create_private(path: str) -> None:
    """Create the database file, if new, readable and writable by its owner and
    group only whatever the umask: it holds every payload. (SQLite gives its
    -wal and -shm files the database's own mode.)"""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660)
    except FileExistsError:
        return
    os.close(fd)
