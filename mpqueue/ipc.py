"""What a supervisor and its workers share, on both sides of the fork: the exit
codes, the message channel over a pipe and its message kinds, and the
scoreboard. Imports nothing of mpqueue, so the supervisor loads no worker code.

Messages (newline-delimited JSON objects, field "type"):
  worker -> supervisor (report pipe): READY {"tasks": {name: public options}},
      BOOT_FAILED {"error"}, OVERDUE {} (a job overran and can't be stopped: its
      scoreboard deadline is now, kill me), and in dispatch mode DONE {"id", and
      for an ack "token", "record", "ttl", "first"} and WANT {"n"} (send me up to n
      more jobs: the worker's credit, which only it raises; each job sent spends one)
  supervisor -> worker (control pipe): STOP {}, and in dispatch mode JOB
      {"id", "token", "envelope"}

The scoreboard is a tiny shared-memory record per worker (Apache's idea), with a
slot per job it may run at once: the worker writes what it is running; the
supervisor reads it to enforce hard timeouts and count busy slots, without a
message per job. Each record is guarded by a sequence number (odd while
writing) so the reader never sees half a record.
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

READY, BOOT_FAILED, DONE, OVERDUE, STOP, JOB = "ready", "boot_failed", "done", "overdue", "stop", "job"
WANT = "want"
# An idle worker stamps its scoreboard this often; the supervisor replaces one
# silent for many times longer (supervisor/loop.py STALE_AFTER).
BEAT_EVERY = 2.0


def done_message(job_id: str, ack=None) -> dict:
    """DONE, dispatch mode: a job ended; with its ack (a brokers.Ack) when it succeeded.
    The one place this message is built; ack_fields() reads it back."""
    msg = {"type": DONE, "id": job_id}
    if ack is not None:
        msg.update(token=ack.token, record=ack.record, ttl=ack.ttl, first=ack.first_attempt)
    return msg


def want_message(n: int) -> dict:
    """WANT, dispatch mode: the worker asks for up to `n` more jobs (its prefetch rule
    decides how many it wants in hand; the supervisor never sends beyond its credit)."""
    return {"type": WANT, "n": n}


def ack_fields(msg: dict) -> dict | None:
    """The ack carried by a DONE message, as brokers.Ack's keyword arguments; None
    when the job did not succeed (it was settled in the worker)."""
    if "token" not in msg:
        return None
    return {"id": msg["id"], "token": msg["token"], "record": msg["record"], "ttl": msg["ttl"],
            "first_attempt": msg["first"]}


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


# The header (one writer: the worker's main thread): seq, beat, done, failed, busy slots.
_HEAD = struct.Struct("<I d Q Q I")
# A slot per job the worker may run at once: seq, busy, started, timeout, id, token.
_SLOT = struct.Struct("<I B d d 32s 32s")


@dataclass(frozen=True)
class Slot:
    busy: bool
    started: float        # time.monotonic() of the job's start (system-wide clock on Linux)
    timeout: float        # the supervisor kills the worker at started + timeout
    job_id: str
    token: str
    index: int = 0

    def deadline(self) -> float:
        return self.started + self.timeout


_IDLE = Slot(False, 0.0, 0.0, "", "")


@dataclass(frozen=True)
class Board:
    """A worker's scoreboard as read: when it last showed life, its totals, and
    the jobs it runs now (`running`, one Slot each)."""
    beat: float
    done: int
    failed: int
    running: tuple = ()

    @property
    def busy(self) -> int:
        return len(self.running)

    def deadline(self) -> float:
        return min((s.deadline() for s in self.running), default=float("inf"))


class Scoreboard:
    """Written by one thread of the worker, read by the supervisor. `slots`: the
    most jobs the worker runs at once (its queue's concurrency)."""

    def __init__(self, slots: int = 1, clock=time.monotonic):
        self.clock = clock                        # monotonic: system-wide on Linux, so both sides agree
        self.size = slots
        length = _HEAD.size + slots * _SLOT.size
        self._mm = mmap.mmap(-1, -(-length // mmap.PAGESIZE) * mmap.PAGESIZE)   # anonymous + shared: survives fork
        self._seq = [0] * (slots + 1)             # the header's, then each slot's
        self._done = self._failed = self._busy = 0
        self._write_head()                        # a fresh worker counts as just heard from

    def _write_head(self):
        seq = self._seq[0] + 1
        _HEAD.pack_into(self._mm, 0, seq, self.clock(), self._done, self._failed, self._busy)
        self._seq[0] = seq + 1
        struct.pack_into("<I", self._mm, 0, seq + 1)

    def _write_slot(self, slot, busy, started, timeout, job_id, token):
        at = _HEAD.size + slot * _SLOT.size
        seq = self._seq[slot + 1] + 1
        _SLOT.pack_into(self._mm, at, seq, busy, started, timeout, job_id.encode()[:32], token.encode()[:32])
        self._seq[slot + 1] = seq + 1
        struct.pack_into("<I", self._mm, at, seq + 1)

    def start(self, job_id: str, token: str, timeout: float, slot: int = 0) -> None:
        self._write_slot(slot, 1, self.clock(), timeout, job_id, token)
        self._busy += 1
        self._write_head()

    def overdue(self, slot: int, job_id: str, token: str, started: float) -> None:
        """The worker gave up on this job (it overran and can't be stopped): its
        deadline becomes now, so the supervisor kills the worker at once."""
        self._write_slot(slot, 1, started, max(0.0, self.clock() - started), job_id, token)
        self._write_head()

    def finish(self, ok: bool, slot: int = 0) -> None:
        if ok:
            self._done += 1
        else:
            self._failed += 1
        self._write_slot(slot, 0, 0.0, 0.0, "", "")
        self._busy -= 1
        self._write_head()

    def count_failed(self) -> None:
        """A job refused before it started (no slot was taken)."""
        self._failed += 1
        self._write_head()

    def beat(self) -> None:
        """Show the supervisor this worker is alive while it waits for work."""
        self._write_head()

    def read(self) -> Board:
        head = _read(self._mm, 0, _HEAD)
        if head is None:
            return Board(self.clock(), 0, 0)
        _, beat, done, failed, busy = head
        running = ()
        if busy:
            running = tuple(s for s in (self._slot(i) for i in range(self.size)) if s.busy)
        return Board(beat, done, failed, running)

    def _slot(self, i: int) -> Slot:
        rec = _read(self._mm, _HEAD.size + i * _SLOT.size, _SLOT)
        if rec is None:
            return _IDLE
        _, busy, started, timeout, jid, tok = rec
        return Slot(bool(busy), started, timeout, jid.rstrip(b"\0").decode(), tok.rstrip(b"\0").decode(), i)

    def close(self) -> None:
        self._mm.close()


def _read(mm, at: int, fmt: struct.Struct):
    """One record, never half-written (its sequence number is odd while it is)."""
    for _ in range(100):
        rec = fmt.unpack_from(mm, at)
        if rec[0] % 2 == 0 and struct.unpack_from("<I", mm, at)[0] == rec[0]:
            return rec
    return None
