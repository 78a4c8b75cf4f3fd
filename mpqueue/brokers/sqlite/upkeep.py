"""The SQLite broker at depth: what keeps its reads and its file the same size
whether a queue holds ten jobs or a million (issue #27 item 9).

- Counts: `job_count` holds the number of jobs per (queue, state), kept by
  triggers on `job`. Triggers live in the file, so every writer keeps them
  right, a v0.1.0 node in a rolling upgrade included; a file without them
  (v0.1.0's, or this tree's before them) gets them when opened, the table filled
  from COUNT(*) in the same transaction as the triggers, under the write lock.
  The format stays 1: v0.1.0 reads and writes such a file unchanged.
- The WAL: SQLite's own checkpoint runs right after a commit, when every reader
  still reads an older snapshot, so under steady readers it never copies the
  whole log, and the log restarts only once all of it is copied: the WAL grew to
  ~300 MB. Our connections turn it off and checkpoint before a write instead
  (PASSIVE, past CHECKPOINT_AT, under the flock: no writer in between), when
  every reader that began since the last commit reads the newest snapshot; once
  the whole log is copied, that writer's own commit restarts it, and
  journal_size_limit cuts the file back to CHECKPOINT_AT. Past WAL_LIMIT (readers
  that never let go) a writer checkpoints with TRUNCATE, waiting at most
  CHECKPOINT_WAIT_MS for readers (ours are short), and after a failed try waits
  CHECKPOINT_RETRY writes before the next. The heartbeat also checkpoints.
  (Nodes of 0.1.0 keep SQLite's own checkpoint: it costs them nothing new.)
- Space: new files are made with auto_vacuum=INCREMENTAL; a file of an earlier
  release is converted (VACUUM) when opened if its live data is at most
  CONVERT_LIVE_BYTES (bigger ones: docs/explanation/brokers.md, for the one-line command).
  The supervisor's heartbeat (every 15 s) gives back up to VACUUM_STEP free
  pages and checkpoints, so the file shrinks after a drain.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3

CHECKPOINT_AT = 4 << 20           # bytes of WAL a writer lets pass before it checkpoints (SQLite's 1000 pages)
WAL_LIMIT = 16 << 20              # ... and before it waits for readers to leave it
CHECKPOINT_WAIT_MS = 25           # how long a checkpoint waits for readers to leave the WAL
CHECKPOINT_RETRY = 100            # commits between two tries while the WAL stays too big
VACUUM_STEP = 4096                # free pages given back per heartbeat (16 MB of 4 KiB pages)
VACUUM_MIN_FREE = 64              # fewer free pages than this are left for reuse
CONVERT_LIVE_BYTES = 32 << 20     # an older file with at most this much data is converted at open
INCREMENTAL = 2                   # PRAGMA auto_vacuum's value for INCREMENTAL

_COUNTED = "job_count_insert"
COUNTERS = [
    """CREATE TABLE IF NOT EXISTS job_count (
        queue TEXT NOT NULL, state INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (queue, state))""",
    # An upsert: one step down the key (no job insert says OR IGNORE/REPLACE, which would
    # override a trigger's conflict handling; v0.1.0's don't either).
    """CREATE TRIGGER IF NOT EXISTS job_count_insert AFTER INSERT ON job BEGIN
        INSERT INTO job_count(queue, state, n) VALUES (new.queue, new.state, 1)
            ON CONFLICT(queue, state) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER IF NOT EXISTS job_count_delete AFTER DELETE ON job BEGIN
        UPDATE job_count SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    END""",
    """CREATE TRIGGER IF NOT EXISTS job_count_update AFTER UPDATE OF queue, state ON job
    WHEN old.queue IS NOT new.queue OR old.state IS NOT new.state BEGIN
        UPDATE job_count SET n = n - 1 WHERE queue = old.queue AND state = old.state;
        INSERT INTO job_count(queue, state, n) VALUES (new.queue, new.state, 1)
            ON CONFLICT(queue, state) DO UPDATE SET n = n + 1;
    END""",
]


def ensure_counters(db) -> None:
    """Create the counters and their triggers if the file lacks them, counting
    what is there: inside the caller's write transaction, so no job changes between
    the count and the first trigger."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='trigger' AND name=?", (_COUNTED,)).fetchone():
        return
    db.execute("DROP TABLE IF EXISTS job_count")
    for statement in COUNTERS:
        db.execute(statement)
    db.execute("INSERT INTO job_count(queue, state, n) SELECT queue, state, count(*) FROM job GROUP BY queue, state")


def prepare_file(conn, fresh: bool) -> None:
    """Before anything is written: a new file gets incremental auto-vacuum (it
    only takes effect when set before the first table), every connection the
    WAL's size limit."""
    if fresh:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_AT}")
    conn.execute("PRAGMA wal_autocheckpoint = 0")      # WalGuard checkpoints, before writes


def convert_small(conn) -> None:
    """Give an older file (auto_vacuum off) incremental auto-vacuum with a VACUUM,
    if its live data is small enough to copy at once. Called under the write lock,
    outside any transaction. A failure (a reader of another release in the way,
    say) leaves the file as it was, to try at the next open."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
        return
    pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                         for p in ("page_count", "freelist_count", "page_size"))
    if (pages - free) * size > CONVERT_LIVE_BYTES:
        return
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")


def give_back(db) -> int:
    """Inside a write transaction: return up to VACUUM_STEP free pages to the file
    system (the file shrinks at the next checkpoint). Returns the pages freed."""
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
        return 0
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    if free < VACUUM_MIN_FREE:
        return 0
    # One page per call: the pragma frees a page per step, and Python's sqlite3 steps a
    # statement without result columns once.
    for _ in range(min(free, VACUUM_STEP)):
        db.execute("PRAGMA incremental_vacuum")
    return free - db.execute("PRAGMA freelist_count").fetchone()[0]


def wal_size(path: str) -> int:
    try:
        return os.stat(path + "-wal").st_size
    except OSError:
        return 0


def checkpoint(conn, busy_ms: int) -> bool:
    """Copy the WAL into the database and truncate it, waiting at most
    CHECKPOINT_WAIT_MS for readers; True if it was emptied. Outside a transaction,
    under the write lock; the connection's busy timeout is set back to `busy_ms`."""
    try:
        conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0
    except sqlite3.Error:
        return False
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")


class WalGuard:
    """Per connection: decides when a writer checkpoints (see the module docstring)."""

    def __init__(self, path: str | None):
        self.path = path
        self.wait = 0          # commits to let pass before the next try

    def before_write(self, conn, busy_ms: int) -> None:
        if self.path is None:
            return
        size = wal_size(self.path)
        if size <= CHECKPOINT_AT:
            return
        if size > WAL_LIMIT:
            if self.wait > 0:
                self.wait -= 1
            elif not checkpoint(conn, busy_ms):
                self.wait = CHECKPOINT_RETRY
            else:
                return
        with contextlib.suppress(sqlite3.Error):       # never waits: copies what no reader still needs
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
