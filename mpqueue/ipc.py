"""What a supervisor and its workers share, on both sides of the fork: the exit
codes, the message channel over a pipe and its message kinds, and the
scoreboard. Imports nothing of mpqueue, so the supervisor loads no worker code.

Messages (newline-delimited JSON objects, field "type"):
  worker -> supervisor (report pipe): READY {"tasks": {name: public options}},
      BOOT_FAILED {"error"}, and in dispatch mode DONE {"id", and for an ack
      "token", "record", "ttl", "first"}
  supervisor -> worker (control pipe): STOP {}, and in dispatch mode JOB
      {"id", "token", "envelope"}

The scoreboard is a tiny shared-memory record per worker (Apache's idea): the
worker writes what it is running; the supervisor reads it to enforce hard
timeouts and count busy workers, without a message per job. Writes are guarded
by a sequence number (odd while writing) so the reader never sees half a record.
"""
from __future__ import annotations

import json
import mmap
import os
import struct
import time
from dataclasses import dataclass

# Exit statuses (sysexits.h names, which systemd shows: "status=78/CONFIG").
EXIT_OK = 0
EXIT_FAILED = 1          # a fatal error at run time (e.g. the service already runs, a broker file we can't open)
EX_USAGE = 2             # bad command-line usage (click's own code)
EX_SOFTWARE = 70         # workers failed to boot: the task code or a start hook raised
EX_CONFIG = 78           # invalid configuration: the unit does not restart on it
# A worker that could not boot exits with this; its BOOT_FAILED message says why.
EXIT_BOOT_FAILED = EX_SOFTWARE

READY, BOOT_FAILED, DONE, STOP, JOB = "ready", "boot_failed", "done", "stop", "job"
# An idle worker stamps its scoreboard this often; the supervisor replaces one
# silent for many times longer (supervisor/loop.py STALE_AFTER).
BEAT_EVERY = 2.0


class Channel:
    """Newline-delimited JSON over a pipe (both ends use it)."""

    def __init__(self, fd: int):
        self.fd = fd
        self._buf = b""

    def send(self, msg: dict) -> None:
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]

    def receive(self) -> list[dict] | None:
        """Messages now readable; None at end of file (the other side is gone)."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return None
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [json.loads(line) for line in lines if line]


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
    def __init__(self, clock=time.monotonic):
        self.clock = clock                        # monotonic: system-wide on Linux, so both sides agree
        self._mm = mmap.mmap(-1, mmap.PAGESIZE)   # anonymous + shared: survives fork
        self._seq = 0
        self._done = self._failed = 0
        self._busy = (0, 0.0, 0.0, "", "")
        self._write(*self._busy)          # a fresh worker counts as just heard from

    def _write(self, busy, started, timeout, job_id, token):
        self._busy = (busy, started, timeout, job_id, token)
        self._seq += 1
        _FMT.pack_into(self._mm, 0, self._seq, busy, started, timeout, self.clock(), self._done,
                       self._failed, job_id.encode()[:32], token.encode()[:32])
        self._seq += 1
        struct.pack_into("<I", self._mm, 0, self._seq)

    def start(self, job_id: str, token: str, timeout: float) -> None:
        self._write(1, self.clock(), timeout, job_id, token)

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
        return Slot(False, 0.0, 0.0, self.clock(), 0, 0, "", "")

    def close(self) -> None:
        self._mm.close()
