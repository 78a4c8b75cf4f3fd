"""The SQLite broker's throughput history (the Inspection contract's record_history
and history): the table `history`, one row per queue and minute with the queue's
totals then, written in one transaction that also drops rows older than a day.
Time is the host's clock, as everywhere in this broker (db.py)."""
from __future__ import annotations

from ..base import HISTORY_EVERY_MS, HISTORY_KEEP_MS
from .db import now_ms as host_now_ms

_CHUNK = 500      # queue names per statement (SQLite limits a statement's variables)


class History:
    """Mixed into SQLiteBroker, which provides _read and _write."""

    def record_history(self, queues, every_ms=HISTORY_EVERY_MS, now_ms=None):
        if not queues:
            return None
        now = host_now_ms() if now_ms is None else int(now_ms)
        at = now - now % int(every_ms)
        with self._write() as db:
            for queue in dict.fromkeys(queues):
                row = db.execute("SELECT done, failed FROM stats WHERE queue=?", (queue,)).fetchone() or (0, 0)
                db.execute("INSERT OR REPLACE INTO history(queue, at, done, failed) VALUES (?,?,?,?)",
                           (queue, at, *row))
            # every queue's old rows, served or not: a queue nobody serves any more leaves nothing behind
            db.execute("DELETE FROM history WHERE at < ?", (now - HISTORY_KEEP_MS,))
        return now

    def history(self, queues, since_ms):
        names = list(dict.fromkeys(queues))
        out: dict[str, list] = {q: [] for q in names}
        for i in range(0, len(names), _CHUNK):
            chunk = names[i:i + _CHUNK]
            rows = self._read(f"SELECT queue, at, done, failed FROM history WHERE queue IN "
                              f"({','.join('?' * len(chunk))}) AND at >= ? ORDER BY queue, at",
                              (*chunk, int(since_ms)))
            for queue, at, done, failed in rows:
                out[queue].append((at, done, failed))
        return {q: out[q] for q in queues}
