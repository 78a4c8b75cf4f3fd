"""The supervisor: the one process systemd watches. It forks the workers, restarts
any that die, kills overdue jobs, hands back or recovers what dead workers held,
and stops gracefully. Signal handlers only record; this loop does everything,
so a stuck loop is visible (it stops sending WATCHDOG=1). Its roles live next
door, one module each, on the injectable `clock`, so its decisions are tested
without processes (tests/unit/test_supervisor.py). It never imports task code,
so every new worker loads the current code."""
from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time

from .. import ipc, logsetup
from ..brokers import BrokerError, open_broker
from ..core.config import ConfigError, load_config
from ..core.names import redact_text
from ..proc import SignalQueue, set_title
from . import handles, lock, reload
from .backoff import BootBackoff
from .dispatcher import Dispatcher
from .gate import BrokerGate, wait_until_up
from .holding import GrabHolding
from .notify import Notifier, watchdog_interval
from .recovery import Recovery
from .status import busy_count, node_info, status_line
from .timers import Timers

log = logging.getLogger("mpqueue.supervisor")
# Idle Redis cost is these calls alone: heartbeat and dead-node lease reaping every
# 15 s keep an idle service under one command a second; a dead node's jobs come back
# within 15 s of their lease's end.
HEARTBEAT_EVERY, REAP_EVERY, STATUS_EVERY, COUNT_EVERY = 15.0, 15.0, 2.0, 15.0
STALE_AFTER = 30.0      # an idle worker silent this long is stuck: replace it
BROKER_TIMEOUT = 2.0    # a hung broker must not hold the loop (and the watchdog ping): see gate.py
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD)


class Supervisor:
    def __init__(self, config, clock=time.monotonic, spawn=handles.spawn, reap=handles.reap):
        self.cfg = config
        self.clock, self._spawn, self._reap = clock, spawn, reap
        self.node_id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"
        self.notifier = Notifier()
        self.workers: dict[int, handles.WorkerHandle] = {}
        self.generation = 0
        self.stopping = self.quick = self.reloading = False
        self.stop_deadline = None
        self.backoff = BootBackoff(clock)
        self.gate = BrokerGate(clock)
        self.watchdog_every = watchdog_interval()
        self.timers = Timers(clock, ["heartbeat", "reap", "status", "count"]
                             + (["watchdog"] if self.watchdog_every else []))
        self.totals = {"done": 0, "failed": 0}     # of workers gone since start
        self.ready_jobs = None
        self.started_at = time.time()
        self.dead_at_boot: list = []
        # Opened by run() (or given by a test through attach()):
        self.lock_fd = self.reload_status = self.signals = None
        self.broker = self.recovery = None
        self.holdings: dict[tuple[str, str], object] = {}     # (queue, mode) -> Holding

    # -- start-up
    def run(self) -> int:
        self.lock_fd = lock.acquire(self.cfg.name)
        self.reload_status = reload.ReloadStatus(self.cfg.name)
        self.signals = SignalQueue(STOP_SIGNALS)
        set_title(f"mpqueue {self.cfg.name}: supervisor")
        try:
            broker = open_broker(self.cfg.broker, socket_timeout=BROKER_TIMEOUT)
        except BrokerError as exc:        # e.g. an SQLite file where we may not write
            return self.fatal(f"failed: {exc}", errno=5, code=ipc.EXIT_FAILED)     # EIO
        self.attach(broker)
        if not self.wait_for_broker():
            return ipc.EXIT_OK
        return self.start()

    def attach(self, broker) -> None:
        self.broker = broker
        self.recovery = Recovery(broker, self.cfg.queues, self.clock)

    def start(self) -> int:
        self.broker.add_queues(list(self.cfg.queues))
        for q in self.cfg.queues.values():
            for i in range(q.workers):
                self.spawn(q, i)
        error = self.wait_until_booted()
        if error:
            self.quick_stop()
            return self.fatal(f"failed: {error}", errno=8, code=ipc.EX_SOFTWARE)    # ENOEXEC
        if self.stopping:
            return self.finish()
        log.info("started: %d workers on queues %s", len(self.workers), ", ".join(self.cfg.queues))
        self.notifier.ready(self.status_line())
        return self.loop()

    def fatal(self, status: str, errno: int, code: int) -> int:
        log.error("start-up %s", redact_text(status))
        self.notifier.fatal(redact_text(status), errno=errno)
        return code

    def wait_for_broker(self) -> bool:
        """At start: True once the broker answers, False if told to stop meanwhile."""
        def down(exc):
            self.notifier.status(redact_text(f"waiting for broker: {exc}"))
        return wait_until_up(self.broker.ping, lambda delay: self.sleep(delay) and self.stopping, down)

    def wait_until_booted(self) -> str | None:
        while not all(h.ready for h in self.workers.values()):
            self.turn(1.0)
            if self.stopping:
                return None
            failed = [h for h in self.dead_at_boot if h.boot_error]
            if failed:
                return f"queue {failed[0].queue}: {failed[0].boot_error}"
        return None

    # -- the loop
    def loop(self) -> int:
        while True:
            self.turn(self.next_timeout())
            if self.stopping and not self.workers:
                return self.finish()
            if self.stopping:
                self.stop_step()
            else:
                self.maintain()

    def turn(self, timeout: float) -> None:
        """Wait for anything, then handle signals, reports, dead children, dispatch."""
        self.dead_at_boot = []
        fds = [self.signals, *[h.report.fd for h in self.workers.values()]]
        for holding in self.holdings.values():
            fds += holding.fds()
        readable = self.select(fds, timeout)
        for signum in self.signals.drain():
            self.handle_signal(signum)
        for h in list(self.workers.values()):
            if h.report.fd in readable:
                self.on_reports(h)
        for pid, status in self._reap():
            self.on_exit(pid, status)
        self.pump(readable)

    def select(self, fds, timeout):
        return select.select(fds, [], [], max(0.0, timeout))[0]     # EINTR is retried (PEP 475)

    def sleep(self, seconds: float) -> bool:
        """Wait, still handling signals; True if a signal arrived."""
        readable = self.select([self.signals], seconds)
        signums = self.signals.drain() if readable else []
        for signum in signums:
            self.handle_signal(signum)
        return bool(signums)

    def next_timeout(self) -> float:
        """Until the next timer, job deadline, dispatcher turn or stop deadline; at most 1 s."""
        now = self.clock()
        busy = [h.scoreboard.read() for h in self.workers.values()]
        deadlines = [s.deadline() - now for s in busy if s.busy]
        t = min([self.timers.next_in(), 1.0, *deadlines, *(d.timeout(now) for d in self.holdings.values())])
        if self.stop_deadline is not None:
            t = min(t, self.stop_deadline - now)
        return max(0.0, t)

    # -- signals: record in the handler, act here
    def handle_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.stopping:
                log.warning("second stop signal: stopping now")
                self.quick_stop()
            else:
                self.graceful_stop()
        elif signum == signal.SIGQUIT:
            self.quick_stop()
        elif signum == signal.SIGHUP and not self.stopping:
            self.begin_reload()

    # -- reload: a new generation of workers, overlapping the old one
    def begin_reload(self) -> None:
        self.notifier.reloading()
        self.reload_status.write("running")
        try:
            new = load_config(self.cfg.source)
            reload.check_compatible(self.cfg, new)
        except (ConfigError, reload.ReloadRefused) as exc:
            self.end_reload(f"reload failed, keeping the running configuration: {exc}")
            return
        log.info("reloading: starting generation %d", self.generation + 1)
        self.generation += 1
        self.cfg = new
        self.recovery.configure(new.queues)
        logsetup.set_level(new.log.level)
        for q in new.queues.values():
            holding = self.holdings.get((q.name, q.mode))
            if holding is not None:
                holding.configure(q, new.lease_grace)
        self.gate.call(lambda: self.broker.add_queues(list(new.queues)))
        self.reloading = True

    def end_reload(self, error: str = "") -> None:
        self.reloading = False
        if error:
            error = redact_text(error)
            log.error("%s", error)
            self.reload_status.write("failed", error)
            self.notifier.send("READY=1", f"STATUS={error}")
        else:
            log.info("reload complete: generation %d serving", self.generation)
            self.reload_status.write("done")
            self.notifier.ready(self.status_line())

    # -- stopping
    def graceful_stop(self) -> None:
        """Stop reserving; running jobs may finish until shutdown_timeout."""
        log.info("stopping: waiting up to %g s for running jobs", self.cfg.shutdown_timeout)
        self.stopping = True
        self.stop_deadline = self.clock() + self.cfg.shutdown_timeout
        self.notifier.stopping(f"stopping: draining {busy_count(self.workers.values())} running jobs")
        for h in self.workers.values():
            h.stop()

    def quick_stop(self) -> None:
        self.stopping = self.quick = True
        self.notifier.stopping("stopping now")
        for h in self.workers.values():
            h.kill("shutdown")
        while self.workers:
            for pid, status in self._reap():
                self.on_exit(pid, status)
            if self.workers:
                self.select([], 0.01)

    def stop_step(self) -> None:
        remaining = self.stop_deadline - self.clock()
        if remaining <= 0:
            log.warning("shutdown_timeout reached: killing %d workers, their jobs go back to the queue",
                        len(self.workers))
            for h in self.workers.values():
                h.kill("shutdown")
        else:
            self.notifier.extend_timeout(max(5.0, remaining + 5))

    def finish(self) -> int:
        for holding in self.holdings.values():
            holding.finish()
        self.recovery.flush()
        log.info("stopped")
        return ipc.EXIT_OK

    # -- workers
    def holding_for(self, q):
        """One per (queue, mode): old workers of a queue whose mode a reload changed keep theirs."""
        key = (q.name, q.mode)
        if key not in self.holdings:
            if q.mode == "dispatch":
                self.holdings[key] = Dispatcher(self.broker, self.recovery, q, self.cfg.lease_grace,
                                                f"{self.node_id}/dispatch", self.clock)
            else:
                self.holdings[key] = GrabHolding(self.broker, self.recovery)
        return self.holdings[key]

    def spawn(self, queue_cfg, index: int) -> None:
        inherited = list(self.signals.fds()) if self.signals else []
        for h in self.workers.values():
            inherited += [h.report.fd, h.control.fd]
        h = self._spawn(self.cfg, queue_cfg, index, self.node_id, self.generation, inherited, self.clock())
        h.holding = self.holding_for(queue_cfg)
        self.workers[h.pid] = h

    def on_reports(self, h) -> None:
        try:
            messages = h.report.receive()
        except OSError:
            messages = None
        for msg in messages or []:
            kind = msg.get("type")
            if kind == ipc.READY:
                h.ready = True
                self.backoff.booted(h.slot)
                self.recovery.tasks.update(msg.get("tasks", {}))
                h.holding.worker_ready(h)
            elif kind == ipc.BOOT_FAILED:
                h.boot_error = msg.get("error")
            elif kind == ipc.DONE:
                h.holding.job_done(h, msg)

    def on_exit(self, pid: int, status: int) -> None:
        h = self.workers.pop(pid, None)
        if h is None:
            return
        self.on_reports(h)               # its last words (e.g. a finished job) before we judge it
        slot = h.scoreboard.read()
        self.totals["done"] += slot.done
        self.totals["failed"] += slot.failed
        kind = {"timeout": "timeout", "shutdown": "shutdown"}.get(h.killed_for, "crashed")
        h.holding.worker_gone(h, slot, kind)
        h.close()
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if not h.ready:
            self.dead_at_boot.append(h)
            h.boot_error = h.boot_error or handles.describe(status)
            self.note_boot_failure(h)
        elif not clean and not h.killed_for:
            log.error("worker %s/%d (pid %d) %s; restarting it", h.queue, h.index, pid, handles.describe(status),
                      extra={"queue": h.queue, "worker": h.index, "pid": pid})

    def note_boot_failure(self, h) -> None:
        delay = self.backoff.failed(h.slot)
        if self.reloading and h.generation == self.generation:
            self.end_reload(f"reload failed: queue {h.queue}: {h.boot_error}; the previous workers keep serving")
        if not self.stopping:
            log.error("worker %s/%d failed to boot (%s); retrying in %.1f s", h.queue, h.index, h.boot_error,
                      delay, extra={"queue": h.queue, "worker": h.index})
            self.notifier.status(redact_text(f"queue {h.queue}: {h.boot_error}"))

    # -- upkeep while running
    def maintain(self) -> None:
        self.top_up()
        for h in reload.to_retire(list(self.workers.values()), self.cfg, self.generation):
            h.stop()
        if self.reloading and reload.complete(self.workers.values(), self.cfg, self.generation):
            self.end_reload()
        self.enforce_timeouts()
        if self.timers.fire("reap", self.reap_every()):
            self.gate.call(self.reap_expired)
        if self.timers.fire("heartbeat", HEARTBEAT_EVERY):
            self.gate.call(self.heartbeat)
        if self.recovery.pending() and self.gate.may_call() and not self.recovery.flush():
            self.gate.defer()
        if self.timers.fire("count", COUNT_EVERY) and self.notifier.enabled:     # only STATUS= shows it
            self.gate.call(self.count_ready)
        if self.timers.fire("status", STATUS_EVERY):
            self.notifier.status(self.status_line())
        if self.watchdog_every and self.timers.fire("watchdog", self.watchdog_every):
            # Only this loop pings, right after it has read every worker's scoreboard
            # (enforce_timeouts): a frozen or stuck supervisor falls silent and systemd
            # restarts it. A broker outage alone keeps the loop turning, so it keeps
            # pinging: restarting would not fix Redis.
            self.notifier.watchdog()

    def top_up(self) -> None:
        for q in self.cfg.queues.values():
            present = {h.index for h in self.workers.values()
                       if h.queue == q.name and h.generation == self.generation and not h.retiring}
            for i in range(q.workers):
                if i not in present and self.backoff.may_start((q.name, i)):
                    self.spawn(q, i)

    def enforce_timeouts(self) -> None:
        now = self.clock()
        for h in list(self.workers.values()):
            slot = h.scoreboard.read()
            if h.ready and not slot.busy and now - slot.beat > STALE_AFTER and h.killed_for is None:
                log.error("worker %s/%d (pid %d) silent for %.0f s while idle: replacing it", h.queue, h.index,
                          h.pid, now - slot.beat, extra={"queue": h.queue, "worker": h.index})
                h.kill("stale")
            if slot.busy and now >= slot.deadline() and h.killed_for is None:
                h.kill("timeout")
                log.error("job %s exceeded its timeout of %g s: killed worker %s/%d", slot.job_id, slot.timeout,
                          h.queue, h.index, extra={"queue": h.queue, "job_id": slot.job_id, "outcome": "timeout"})
                held = h.holding.running(h, slot)
                if held is not None:
                    self.recovery.settle(h.queue, held, "timeout")

    def pump(self, readable) -> None:
        for holding in self.holdings.values():
            try:
                if holding.pump(readable, self.stopping):
                    self.gate.record(True)
            except BrokerError as exc:
                self.gate.record(False, exc)
                holding.broker_failed()

    def reap_expired(self) -> None:
        for q in self.cfg.queues:
            self.recovery.reap_expired(q)

    def reap_every(self) -> float:
        """Half the shortest lease, at most REAP_EVERY: a dead node's job comes back
        within 1.5 leases, and a service with long timeouts still idles cheaply."""
        shortest = min(q.timeout for q in self.cfg.queues.values()) + self.cfg.lease_grace
        return min(REAP_EVERY, shortest / 2)

    def count_ready(self) -> None:
        self.ready_jobs = sum(self.broker.ready_count(q) for q in self.cfg.queues)

    def heartbeat(self) -> None:
        info = node_info(self.cfg, list(self.workers.values()), self.totals, self.node_id, self.started_at)
        self.broker.heartbeat(self.node_id, info, ttl=HEARTBEAT_EVERY * 6)

    # -- reporting (status.py)
    def status_line(self) -> str:
        return status_line(self.cfg, list(self.workers.values()), self.totals, self.ready_jobs, self.gate.ok)

