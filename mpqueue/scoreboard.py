"""A tiny shared-memory record per worker (Apache's scoreboard idea).

The worker writes what it is running; the supervisor reads it to enforce hard
timeouts and count busy workers, without a message per job. Writes are guarded
by a sequence number (odd while writing) so the reader never sees half a record.
"""
from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass

_FMT = struct.Struct("<I B d d d Q Q 32s 32s")   # seq, busy, started, timeout, beat, done, failed, id, token
SIZE = _FMT.size


@dataclass(frozen=True)
class Slot:
    busy: bool
    started: float        # time.monotonic() of the job's start (system-wide clock on Linux)
    timeout: float
    beat: float           # time.monotonic() the worker last showed it is alive
    done: int
    failed: int
    job_id: str
    token: str

    def deadline(self) -> float:
        return self.started + self.timeout


class Scoreboard:
    def __init__(self):
        self._mm = mmap.mmap(-1, mmap.PAGESIZE)   # anonymous + shared: survives fork
        self._seq = 0
        self._done = self._failed = 0
        self._busy = (0, 0.0, 0.0, "", "")
        self._write(*self._busy)          # a fresh worker counts as just heard from

    def _write(self, busy, started, timeout, job_id, token):
        self._busy = (busy, started, timeout, job_id, token)
        self._seq += 1
        _FMT.pack_into(self._mm, 0, self._seq, busy, started, timeout, time.monotonic(), self._done,
                       self._failed, job_id.encode()[:32], token.encode()[:32])
        self._seq += 1
        struct.pack_into("<I", self._mm, 0, self._seq)

    def start(self, job_id: str, token: str, timeout: float) -> None:
        self._write(1, time.monotonic(), timeout, job_id, token)

    def finish(self, ok: bool) -> None:
        if ok:
            self._done += 1
        else:
            self._failed += 1
        self._write(0, 0.0, 0.0, "", "")

    def beat(self) -> None:
        """Show the supervisor this worker is alive while it waits for work."""
        self._write(*self._busy)

    def read(self) -> Slot:
        for _ in range(100):
            seq, busy, started, timeout, beat, done, failed, jid, tok = _FMT.unpack_from(self._mm, 0)
            if seq % 2 == 0 and struct.unpack_from("<I", self._mm, 0)[0] == seq:
                return Slot(bool(busy), started, timeout, beat, done, failed,
                            jid.rstrip(b"\0").decode(), tok.rstrip(b"\0").decode())
        return Slot(False, 0.0, 0.0, time.monotonic(), 0, 0, "", "")

    def close(self) -> None:
        self._mm.close()
