"""A worker process: boot (import task code, run start hooks), then fetch, run,
ack until told to stop or recycled. One worker serves one queue.

Talks to its supervisor over two pipes: `report` (worker -> supervisor: ready,
boot failure, and in dispatch mode finished jobs) and `control` (supervisor ->
worker: stop, and in dispatch mode the jobs to run). Never notifies systemd.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import sys
import time
import traceback

from . import client as clientmod
from . import logsetup, outcome, registry
from .brokers import BrokerError, open_broker
from .runner import Runner
from .signals import SignalQueue

log = logging.getLogger("mpqueue.worker")
EXIT_OK, EXIT_BOOT_FAILED = 0, 3
FALLBACK_WAIT = 60.0         # re-check the broker this often even if every hint were lost
BEAT_EVERY = 2.0             # liveness stamp while idle; the supervisor replaces a silent worker
RSS_EVERY = 0.1             # memory_limit: read the resident size at most this often
PREFETCH_BUDGET = 0.010      # reserve no more jobs at once than this many seconds of recent work
_PR_SET_PDEATHSIG = 1


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


def _die_with_parent(parent_pid: int) -> None:
    # If the supervisor is SIGKILLed, don't live on as an orphan running jobs.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


class Worker:
    def __init__(self, service, queue, index: int, node_id: str, report_fd: int, control_fd: int,
                 scoreboard, parent_pid: int):
        self.service, self.cfg, self.index = service, queue, index
        self.consumer = f"{node_id}/{os.getpid()}"
        self.report, self.control = Channel(report_fd), Channel(control_fd)
        self.scoreboard = scoreboard
        self.parent_pid = parent_pid
        self.stopping = False
        self.jobs = 0
        self.broker = None
        self.waiter = None
        self.handed: list = []        # (token, envelope, received): reserved for us, not run yet
        self.avg_run = PREFETCH_BUDGET  # seconds per job, recent average (first reserve takes one)

    # -- lifecycle
    def main(self) -> int:
        _die_with_parent(self.parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the supervisor orchestrates ^C
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.signals = SignalQueue([signal.SIGTERM])
        _set_title(f"mpqueue {self.service.name}: {self.cfg.name} worker {self.index}")
        try:
            self.boot()
        except BaseException as exc:  # noqa: BLE001 - report any boot failure, then exit
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log.error("worker failed to boot: %s", text, extra={"queue": self.cfg.name},
                      exc_info=True)
            self.report.send({"type": "boot_failed", "error": text})
            return EXIT_BOOT_FAILED
        self.report.send({"type": "ready", "tasks": {n: t.public() for n, t in registry.all_tasks().items()}})
        if self.cfg.mode == "dispatch":
            self.serve_dispatched()
        else:
            self.serve_grabbed()
        return EXIT_OK

    def boot(self) -> None:
        logsetup.setup_logging(self.service.log, self.service.name)
        for entry in reversed(self.service.path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        self.broker = open_broker(self.service.broker)
        clientmod.set_default_client(clientmod.Client(self.service.broker, broker=self.broker,
                                                      max_payload=self.service.max_payload))
        for name in self.service.imports:
            __import__(name)
        context = {"service": self.service.name, "queue": self.cfg.name, "worker_index": self.index}
        for hook in (self.service.on_worker_start, self.cfg.on_worker_start):
            if hook:
                outcome.import_string(hook)(context)
        self.runner = Runner(self.broker, self.service, self.cfg, self.index, self.scoreboard)

    # -- grab mode: this worker reserves its own jobs
    def serve_grabbed(self) -> None:
        lease = self.cfg.timeout + self.service.lease_grace
        pending, idle = [], False
        while not self.stopping:
            self.select([], 0)           # a stop asked for during the last job
            if self.stopping:
                break
            self.collect_handed()
            if self.handed:              # prefetched, or handed to us by a push while we were idle
                pending += self.run_one(*self.handed.pop(0))
                continue
            try:
                if self._down_since is not None:
                    self.reclaim(keep={a.id for a in pending})
                flags = ("L" if idle else "") + ("E" if self.waiter else "")
                reserved, next_due = self.broker.reserve(self.cfg.name, self.consumer, self.batch_size(), lease,
                                                         pending, flags)
            except BrokerError as exc:
                self.broker_down(exc)
                continue
            pending, idle = [], not reserved and self.waiter is not None
            if not reserved:
                self.wait(next_due)
                continue
            now = time.monotonic()
            self.handed += [(r.token, r.envelope, now) for r in reserved]
        self.flush(pending)

    def batch_size(self) -> int:
        """How many jobs to reserve at once: one round trip for several short jobs,
        but never more than about PREFETCH_BUDGET of work, so a batch can't keep
        jobs from another idle worker (or a newer higher-priority job) for long."""
        n = self.cfg.prefetch
        if n > 1:
            n = max(1, min(n, int(PREFETCH_BUDGET / max(self.avg_run, 1e-6))))
        if self.cfg.max_jobs:
            n = max(1, min(n, self.cfg.max_jobs - self.jobs))
        return n

    def run_one(self, token: str, envelope: str, received: float | None = None) -> list:
        """Run a reserved job; returns the ack to deliver (folded into the next reserve)."""
        started = time.monotonic()
        if received is not None and started - received > 1.0:
            # it waited in our hands: its lease has been running since then
            if not self.broker.extend(self.cfg.name, envelope.split(" ", 1)[0], token,
                                      self.cfg.timeout + self.service.lease_grace):
                return []                # no longer ours (its lease ran out): someone else has it
        try:
            ack = self.runner.run(token, envelope)
        except BrokerError as exc:
            # The job ran but can't be settled: exit, and the supervisor hands it
            # back when the broker answers again (its lease bounds the wait).
            log.warning("broker unreachable while settling a job, exiting to be replaced: %s", exc,
                        extra={"queue": self.cfg.name})
            os._exit(1)
        self.avg_run += (time.monotonic() - started - self.avg_run) * 0.2
        self.after_job()
        return [ack] if ack else []

    def collect_handed(self) -> None:
        if self.waiter is not None:
            try:
                now = time.monotonic()
                self.handed += [(t, e, now) for t, e in self.waiter.drain()]
            except BrokerError as exc:
                self.drop_waiter()
                self.broker_down(exc)

    def flush(self, acks) -> None:
        """On the way out: deliver the last acks, and hand back the jobs reserved for
        us that we have not run (attempt refunded, to the front of the queue)."""
        deadline = time.monotonic() + self.service.shutdown_timeout
        self.collect_handed()
        while (acks or self.handed) and time.monotonic() < deadline:
            try:
                if acks:
                    self.broker.ack(self.cfg.name, acks)
                    acks = []
                while self.handed:       # last first: each goes to the front, so order is kept
                    token, envelope, _ = self.handed[-1]
                    self.broker.release(self.cfg.name, envelope.split(" ", 1)[0], token)
                    self.handed.pop()
            except BrokerError as exc:
                self.broker_down(exc)

    def wait(self, next_due: float | None) -> None:
        """Sleep until a wake hint or a handed job, the next delayed job is due, a stop,
        or the fallback, stamping the scoreboard so the supervisor knows we live."""
        deadline = time.monotonic() + (FALLBACK_WAIT if next_due is None else min(FALLBACK_WAIT, next_due))
        try:
            if self.waiter is None:
                self.waiter = self.broker.waiter(self.cfg.name, self.consumer)
                return        # a hint may have been missed while subscribing: re-check now
            while not self.stopping:
                remaining = deadline - time.monotonic()
                readable = self.select([self.waiter], min(remaining, BEAT_EVERY))
                if self.waiter in readable:
                    self.collect_handed()
                    return
                if remaining <= BEAT_EVERY:
                    return
        except (BrokerError, OSError) as exc:
            self.drop_waiter()
            self.broker_down(exc)

    def select(self, extra, timeout):
        fds = [self.control.fd, self.signals.fileno(), *extra]
        readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
        self.scoreboard.beat()
        if self.signals.fileno() in readable and self.signals.drain():
            self.stopping = True
        if self.control.fd in readable:
            self.on_control()
        return readable

    def on_control(self) -> list[dict]:
        messages = self.control.receive()
        if messages is None:               # supervisor gone
            os._exit(1)
        jobs = []
        for msg in messages:
            if msg["type"] == "stop":
                self.stopping = True
            elif msg["type"] == "job":
                jobs.append(msg)
        return jobs

    # -- dispatch mode: the supervisor reserves and hands jobs over the control pipe
    def serve_dispatched(self) -> None:
        while not self.stopping:
            readable, _, _ = select.select([self.control.fd, self.signals.fileno()], [], [], BEAT_EVERY)
            self.scoreboard.beat()
            if self.signals.fileno() in readable and self.signals.drain():
                self.stopping = True
            if self.control.fd not in readable:
                continue
            for msg in self.on_control():
                ack = self.runner.run(msg["token"], msg["envelope"])
                reply = {"type": "done", "id": msg["id"]}
                if ack:
                    reply.update(token=ack.token, record=ack.record, ttl=ack.ttl, first=ack.first_attempt)
                self.report.send(reply)
                self.after_job()

    # -- recycling and broker outages
    def after_job(self) -> None:
        self.jobs += 1
        if self.cfg.max_jobs and self.jobs >= self.cfg.max_jobs:
            log.info("recycling after %d jobs (max_jobs)", self.jobs, extra={"queue": self.cfg.name})
            self.stopping = True
        elif self.cfg.memory_limit and self.over_memory_limit():
            self.stopping = True

    _rss_checked = 0.0

    def over_memory_limit(self) -> bool:
        # Reading /proc costs more than a short job: look at most every RSS_EVERY
        # seconds (after every job when jobs take longer than that).
        now = time.monotonic()
        if now - self._rss_checked < RSS_EVERY:
            return False
        self._rss_checked = now
        rss = _rss_mb()
        if rss <= self.cfg.memory_limit:
            return False
        log.warning("recycling: %.0f MB resident exceeds memory_limit %d MB", rss,
                    self.cfg.memory_limit, extra={"queue": self.cfg.name})
        return True

    _down_since = None

    def broker_down(self, exc) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("broker unreachable, retrying: %s", exc, extra={"queue": self.cfg.name})
        backoff = min(5.0, 0.05 * 2 ** min(10, (time.monotonic() - self._down_since) // 1))
        self.select([], backoff)

    def reclaim(self, keep=frozenset()) -> None:
        """Back from an outage: a reserve whose reply was lost may have left a job held
        in our name that we never saw. We run nothing now, so hand back, unrun, all we
        hold but the jobs in `keep` (finished, their ack still to deliver)."""
        self.handed = []
        for held in self.broker.held(self.cfg.name):
            if held.consumer == self.consumer and held.id not in keep and self.broker.release(self.cfg.name, held.id, held.token):
                log.warning("handed back job %s reserved during the outage", held.id,
                            extra={"queue": self.cfg.name, "job_id": held.id})
        log.warning("broker reachable again after %.1f s", time.monotonic() - self._down_since,
                    extra={"queue": self.cfg.name})
        self._down_since = None

    def drop_waiter(self) -> None:
        if self.waiter is not None:
            self.waiter.close()
            self.waiter = None


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _set_title(title: str) -> None:
    try:
        import setproctitle
        setproctitle.setproctitle(title)
    except ImportError:
        pass
