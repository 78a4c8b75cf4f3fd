"""The supervisor: the one process systemd watches. It forks the workers, restarts
any that die, kills overdue jobs, hands back or recovers what dead workers held,
and stops gracefully. Signal handlers only record; this loop does everything,
so a stuck loop is visible (it stops sending WATCHDOG=1).
It never imports task code, so every new worker loads the current code."""
from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time

from . import lock, pool, reload
from .brokers import BrokerError, open_broker
from .dispatcher import Dispatcher
from .notify import Notifier
from .recovery import Recovery
from .signals import SignalQueue
from .status import busy_count, node_info, status_line
from .worker import EXIT_BOOT_FAILED

log = logging.getLogger("mpqueue.supervisor")
# Idle Redis cost is these calls alone (each script's inner commands count too):
# node heartbeat and dead-node lease reaping every 15 s keep an idle service
# under one Redis command per second; a dead node's jobs come back within 15 s
# of their lease's end.
HEARTBEAT_EVERY, REAP_EVERY, STATUS_EVERY, COUNT_EVERY = 15.0, 15.0, 2.0, 15.0
STALE_AFTER = 30.0      # an idle worker silent this long is stuck: replace it
# A broker that accepts connections but never answers must not hold the loop (and
# so the watchdog ping) for long: each call gives up after BROKER_TIMEOUT, and
# after a failure the loop makes no routine broker call for BROKER_RETRY_AFTER.
BROKER_TIMEOUT, BROKER_RETRY_AFTER = 2.0, 2.0
EXIT_OK, EXIT_FAILED = 0, 1


class Supervisor:
    def __init__(self, config):
        self.cfg = config
        self.node_id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"
        self.notifier = Notifier()
        self.workers: dict[int, pool.WorkerHandle] = {}
        self.generation = 0
        self.stopping = self.quick = False
        self.stop_deadline = None
        self.backoff: dict[tuple[str, int], tuple[int, float]] = {}
        self.totals = {"done": 0, "failed": 0}
        self.broker_ok = True
        self.broker_retry_at = 0.0      # while the broker is down: no routine call before this
        self.timers = {"heartbeat": 0.0, "reap": 0.0, "status": 0.0, "count": 0.0}
        self.ready_jobs = None
        self.watchdog_every = _watchdog_interval()
        if self.watchdog_every:
            self.timers["watchdog"] = 0.0
        self.started_at = time.time()
        self.dead_at_boot: list = []
        self.reloading = False

    # -- start-up
    def run(self) -> int:
        self.lock_fd = lock.acquire(self.cfg.name)
        self.reload_status = reload.ReloadStatus(self.cfg.name)
        self.signals = SignalQueue([signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD])
        _set_title(f"mpqueue {self.cfg.name}: supervisor")
        try:
            self.broker = open_broker(self.cfg.broker, socket_timeout=BROKER_TIMEOUT)
        except BrokerError as exc:        # e.g. an SQLite file where we may not write
            log.error("start-up failed: %s", exc)
            self.notifier.fatal(f"failed: {exc}", errno=5)          # EIO
            return EXIT_FAILED
        self.recovery = Recovery(self.broker, self.cfg.queues)
        self.dispatchers = {q.name: Dispatcher(self.broker, q, self.cfg.lease_grace, f"{self.node_id}/dispatch")
                            for q in self.cfg.queues.values() if q.mode == "dispatch"}
        if not self.wait_for_broker():
            return EXIT_OK
        self.broker.add_queues(list(self.cfg.queues))
        for q in self.cfg.queues.values():
            for i in range(q.workers):
                self.spawn(q, i)
        error = self.wait_until_booted()
        if error:
            log.error("start-up failed: %s", error)
            self.notifier.fatal(f"failed: {error}", errno=8)       # ENOEXEC: the task code won't load
            self.quick_stop()
            return EXIT_BOOT_FAILED
        if self.stopping:
            return self.finish()
        log.info("started: %d workers on queues %s", len(self.workers), ", ".join(self.cfg.queues))
        self.notifier.ready(self.status_line())
        return self.loop()

    def wait_for_broker(self) -> bool:
        delay, logged = 0.1, False
        while True:
            try:
                self.broker.ping()
                if logged:
                    log.warning("broker reachable")
                return True
            except BrokerError as exc:
                if not logged:
                    log.warning("broker unreachable at start, retrying: %s", exc)
                    self.notifier.status(f"waiting for broker: {exc}")
                    logged = True
            if self.sleep(delay) and self.stopping:
                return False
            delay = min(5.0, delay * 2)

    def wait_until_booted(self) -> str | None:
        while not all(h.ready for h in self.workers.values()):
            self.turn(1.0)
            if self.stopping:
                return None
            failed = [h for h in self.dead_at_boot if h.boot_error]
            if failed:
                h = failed[0]
                return f"queue {h.queue}: {h.boot_error}"
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
        for d in self.dispatchers.values():
            fds += d.fds()
        readable = self.select(fds, timeout)
        for signum in self.signals.drain():
            self.handle_signal(signum)
        for h in list(self.workers.values()):
            if h.report.fd in readable:
                self.on_reports(h)
        for pid, status in pool.reap():
            self.on_exit(pid, status)
        self.pump_dispatchers(readable)

    def select(self, fds, timeout):
        try:
            return select.select(fds, [], [], max(0.0, timeout))[0]
        except InterruptedError:
            return []

    def sleep(self, seconds: float) -> bool:
        """Wait, still handling signals; True if a signal arrived."""
        readable = self.select([self.signals], seconds)
        signums = self.signals.drain() if readable else []
        for signum in signums:
            self.handle_signal(signum)
        return bool(signums)

    def next_timeout(self) -> float:
        now = time.monotonic()
        t = min(self.timers.values()) - now
        busy = [h.scoreboard.read() for h in self.workers.values()]
        deadlines = [s.deadline() - now for s in busy if s.busy]
        t = min([t, 1.0, *deadlines, *(d.timeout(now) for d in self.dispatchers.values())])
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
        from .config import ConfigError, load_config
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
        self.recovery.queues = {**self.recovery.queues, **new.queues}
        from . import logsetup
        logsetup.set_level(new.log.level)
        for q in new.queues.values():
            if q.mode == "dispatch" and q.name in self.dispatchers:
                self.dispatchers[q.name].configure(q, new.lease_grace)
            elif q.mode == "dispatch":
                self.dispatchers[q.name] = Dispatcher(self.broker, q, new.lease_grace, f"{self.node_id}/dispatch")
        self.broker_call(lambda: self.broker.add_queues(list(new.queues)))
        self.reloading = True

    def end_reload(self, error: str = "") -> None:
        self.reloading = False
        if error:
            log.error("%s", error)
            self.reload_status.write("failed", error)
            self.notifier.send("READY=1", f"STATUS={error}")
        else:
            log.info("reload complete: generation %d serving", self.generation)
            self.reload_status.write("done")
            self.notifier.ready(self.status_line())

    def graceful_stop(self) -> None:
        """Stop reserving; running jobs may finish until shutdown_timeout."""
        log.info("stopping: waiting up to %g s for running jobs", self.cfg.shutdown_timeout)
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.cfg.shutdown_timeout
        self.notifier.stopping(f"stopping: draining {busy_count(self.workers.values())} running jobs")
        for h in self.workers.values():
            h.stop()

    def quick_stop(self) -> None:
        self.stopping = self.quick = True
        self.notifier.stopping("stopping now")
        for h in self.workers.values():
            h.kill("shutdown")
        while self.workers:
            for pid, status in pool.reap():
                self.on_exit(pid, status)
            if self.workers:
                self.select([], 0.01)

    def stop_step(self) -> None:
        if time.monotonic() >= self.stop_deadline:
            log.warning("shutdown_timeout reached: killing %d workers, their jobs go back to the queue",
                        len(self.workers))
            for h in self.workers.values():
                h.kill("shutdown")
        else:
            self.notifier.extend_timeout(max(5.0, self.stop_deadline - time.monotonic() + 5))

    def finish(self) -> int:
        for d in self.dispatchers.values():
            try:
                d.flush_acks()
            except BrokerError as exc:
                log.warning("could not ack the last jobs (they will run again): %s", exc)
            d.close()
        self.recovery.flush()
        log.info("stopped")
        return EXIT_OK

    # -- workers
    def spawn(self, queue_cfg, index: int) -> None:
        inherited = [self.signals.fileno(), self.signals._w]
        for h in self.workers.values():
            inherited += [h.report.fd, h.control.fd]
        h = pool.spawn(self.cfg, queue_cfg, index, self.node_id, self.generation, inherited)
        self.workers[h.pid] = h

    def on_reports(self, h) -> None:
        try:
            messages = h.report.receive()
        except OSError:
            messages = None
        for msg in messages or []:
            kind = msg.get("type")
            if kind == "ready":
                h.ready = True
                self.backoff.pop((h.queue, h.index), None)
                self.recovery.tasks.update(msg.get("tasks", {}))
                if h.mode == "dispatch":
                    self.dispatchers[h.queue].worker_ready(h)
            elif kind == "boot_failed":
                h.boot_error = msg.get("error")
            elif kind == "done" and h.mode == "dispatch":
                self.dispatchers[h.queue].worker_done(h, msg)

    def on_exit(self, pid: int, status: int) -> None:
        h = self.workers.pop(pid, None)
        if h is None:
            return
        self.on_reports(h)               # its last words (e.g. a finished job) before we judge it
        slot = h.scoreboard.read()
        self.totals["done"] += slot.done
        self.totals["failed"] += slot.failed
        if h.mode == "dispatch":
            self.dispatchers[h.queue].worker_gone(h)
        self.recover(h, status, slot)
        h.close()
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if not h.ready:
            self.dead_at_boot.append(h)
            h.boot_error = h.boot_error or pool.describe(status)
            self.note_boot_failure(h)
        elif not clean and not h.killed_for:
            log.error("worker %s/%d (pid %d) %s; restarting it", h.queue, h.index, pid, pool.describe(status),
                      extra={"queue": h.queue, "worker": h.index, "pid": pid})

    def recover(self, h, status, slot) -> None:
        kind = {"timeout": "timeout", "shutdown": "shutdown"}.get(h.killed_for, "crashed")
        if h.current is not None:        # dispatch mode: we know what it held
            if h.killed_for != "timeout":    # (a timed-out job was settled when we killed it)
                from .brokers import Held
                self.recovery.settle(h.queue, Held(h.current["id"], h.current["token"], "", h.current["envelope"]),
                                     kind)
        elif h.mode != "dispatch":
            # Scan even after a clean-looking exit: a worker can die between reserving
            # jobs and marking one busy, and holds the rest of its batch. The job it
            # was running spends an attempt (unless a timeout already settled it);
            # the rest go back unspent. The scan is one small read of held jobs.
            running = slot.job_id if slot.busy and h.killed_for != "timeout" else None
            self.recovery.settle_consumer(h.queue, h.consumer, kind, running)

    def note_boot_failure(self, h) -> None:
        failures = self.backoff.get((h.queue, h.index), (0, 0.0))[0] + 1
        delay = min(60.0, 0.5 * 2 ** (failures - 1))
        self.backoff[(h.queue, h.index)] = (failures, time.monotonic() + delay)
        if self.reloading and h.generation == self.generation:
            self.end_reload(f"reload failed: queue {h.queue}: {h.boot_error}; the previous workers keep serving")
        if not self.stopping:
            log.error("worker %s/%d failed to boot (%s); retrying in %.1f s", h.queue, h.index, h.boot_error,
                      delay, extra={"queue": h.queue, "worker": h.index})
            self.notifier.status(f"queue {h.queue}: {h.boot_error}")

    # -- upkeep while running
    def maintain(self) -> None:
        self.top_up()
        for h in reload.to_retire(list(self.workers.values()), self.cfg, self.generation):
            h.stop()
        if self.reloading and reload.complete(self.workers.values(), self.cfg, self.generation):
            self.end_reload()
        self.enforce_timeouts()
        now = time.monotonic()
        if now >= self.timers["reap"]:
            self.timers["reap"] = now + self.reap_every()
            self.broker_call(self.reap_expired)
        if now >= self.timers["heartbeat"]:
            self.timers["heartbeat"] = now + HEARTBEAT_EVERY
            self.broker_call(self.heartbeat)
        if self.recovery.pending() and self.broker_may_answer() and not self.recovery.flush():
            self.broker_retry_at = time.monotonic() + BROKER_RETRY_AFTER
        if now >= self.timers["count"]:
            self.timers["count"] = now + COUNT_EVERY
            if self.notifier.enabled:       # only STATUS= shows it
                self.broker_call(self.count_ready)
        if now >= self.timers["status"]:
            self.timers["status"] = now + STATUS_EVERY
            self.notifier.status(self.status_line())
        if self.watchdog_every and now >= self.timers["watchdog"]:
            # Only this loop pings, right after it has read every worker's scoreboard
            # (enforce_timeouts): a frozen or stuck supervisor falls silent and systemd
            # restarts it. A broker outage alone keeps the loop turning, so it keeps
            # pinging: restarting would not fix Redis.
            self.timers["watchdog"] = now + self.watchdog_every
            self.notifier.watchdog()

    def top_up(self) -> None:
        now = time.monotonic()
        for q in self.cfg.queues.values():
            present = {h.index for h in self.workers.values()
                       if h.queue == q.name and h.generation == self.generation and not h.retiring}
            for i in range(q.workers):
                if i not in present and self.backoff.get((q.name, i), (0, 0.0))[1] <= now:
                    self.spawn(q, i)

    def enforce_timeouts(self) -> None:
        now = time.monotonic()
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
                held = self.held_job(h, slot)
                if held is not None:
                    self.recovery.settle(h.queue, held, "timeout")

    def held_job(self, h, slot):
        if h.current is not None:
            from .brokers import Held
            return Held(h.current["id"], h.current["token"], "", h.current["envelope"])
        try:
            return next((x for x in self.broker.held(h.queue) if x.id == slot.job_id and x.token == slot.token), None)
        except BrokerError:
            self.recovery.settle_consumer(h.queue, h.consumer, "timeout", slot.job_id)
            return None

    def pump_dispatchers(self, readable) -> None:
        for d in self.dispatchers.values():
            try:
                if d.pump(readable, self.stopping):
                    self.set_broker_ok(True)
            except BrokerError as exc:
                self.set_broker_ok(False, exc)
                self.broker_retry_at = time.monotonic() + BROKER_RETRY_AFTER
                d.close()
                d.suspect = True
                d.due_at = time.monotonic() + 1.0

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

    def broker_may_answer(self) -> bool:
        return self.broker_ok or time.monotonic() >= self.broker_retry_at

    def broker_call(self, fn) -> None:
        """A routine call (heartbeat, reaping, counts): skipped while the broker is
        known to be down, so one loop turn waits for at most one failing call."""
        if not self.broker_may_answer():
            return
        try:
            fn()
            self.set_broker_ok(True)
        except BrokerError as exc:
            self.set_broker_ok(False, exc)
            self.broker_retry_at = time.monotonic() + BROKER_RETRY_AFTER

    def set_broker_ok(self, ok: bool, exc=None) -> None:
        if ok != self.broker_ok:
            (log.warning if ok else log.error)("broker %s%s", "reachable again" if ok else "unreachable: ",
                                                "" if ok else exc)
            self.broker_ok = ok

    # -- reporting (status.py)
    def status_line(self) -> str:
        return status_line(self.cfg, list(self.workers.values()), self.totals, self.ready_jobs, self.broker_ok)


def _watchdog_interval() -> float:
    """Half of systemd's WatchdogSec, if the watchdog is on for this process."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return 0.0
    return int(usec) / 2e6


def _set_title(title: str) -> None:
    try:
        import setproctitle
        setproctitle.setproctitle(title)
    except ImportError:
        pass
