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
import socket
import time

from .. import ipc, logsetup, proc
from ..brokers import BrokerError, DataFormatError, open_broker
from ..core.config import ConfigError, load_config
from ..core.names import redact_text
from ..proc import SignalQueue, set_title
from . import handles, lock, reload
from . import metrics as metricsmod
from .gate import BrokerGate, wait_until_up
from .handles import KillReason
from .history import HistoryWriter
from .notify import Notifier, watchdog_interval
from .phase import Phase, move
from .pool import Pool
from .recovery import Recovery
from .schedules import Schedules
from .signals import STOP_SIGNALS, SignalActions
from .status import QueueLook, busy_count, node_info, status_line
from .timers import Timers, reap_every, renew_every

log = logging.getLogger("mpqueue.supervisor")
# Idle Redis cost is these calls alone: heartbeat and dead-node lease reaping every
# 15 s keep an idle service under one command a second (with, once a minute, the
# history's point: history.py); a dead node's jobs come back within 15 s of their lease's end.
HEARTBEAT_EVERY, REAP_EVERY, STATUS_EVERY, COUNT_EVERY = 15.0, 15.0, 2.0, 15.0
# Cancel requests that say kill (Client.cancel(kill=True)) are looked for this often,
# one read per queue with a job running here: an idle service makes none.
CANCELS_EVERY = 1.0
RENEW_EVERY = 10.0      # lease renewal of running jobs; only queues with a busy worker cost a call
BROKER_TIMEOUT = 2.0    # a hung broker must not hold the loop (and the watchdog ping): see gate.py


class Supervisor(SignalActions):
    def __init__(self, config, clock=time.monotonic, spawn=handles.spawn, reap=handles.reap, wall=time.time):
        self.cfg = config
        self.clock, self._spawn, self._reap = clock, spawn, reap
        self.wall = wall                  # schedules' ticks are wall-clock times (schedules.py)
        self.node_id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"
        self.notifier = Notifier()
        self.generation = 0
        self.phase = Phase.STARTING
        self.stop_deadline = None
        self.gate = BrokerGate(clock)
        self.watchdog_every = watchdog_interval()
        self.timers = Timers(clock, ["heartbeat", "reap", "renew", "status", "count", "cancels"]
                             + (["watchdog"] if self.watchdog_every else [])
                             + (["metrics"] if config.metrics.listen else []))
        self.look = QueueLook()           # ready jobs and paused queues, for STATUS=
        self.started_at = time.time()
        # Opened by run() (or given by a test through attach()):
        self.lock_fd = self.reload_status = self.signals = None
        self.broker = self.recovery = self.pool = self.schedules = self.history = None
        self.metrics = None               # the Prometheus endpoint (metrics.py), if configured

    # -- start-up
    def run(self) -> int:
        self.lock_fd = lock.acquire(self.cfg.name)
        self.reload_status = reload.ReloadStatus(self.cfg.name)
        self.signals = SignalQueue(STOP_SIGNALS)
        set_title(f"mpqueue {self.cfg.name}: supervisor")
        if self.cfg.metrics.listen:
            try:
                self.metrics = metricsmod.Endpoint(self.cfg.metrics.listen, lock.runtime_dir(self.cfg.name))
            except OSError as exc:         # a port taken: one line, and no half-started service
                return self.fatal(f"failed: metrics: cannot listen on {self.cfg.metrics.listen}: "
                                  f"{exc.strerror or exc}", errno=98, code=ipc.EXIT_FAILED)   # EADDRINUSE
            self.metrics.start()
        try:
            broker = open_broker(self.cfg.broker, socket_timeout=BROKER_TIMEOUT)
        except DataFormatError:           # SQLite checks on opening: refused, as below (cli.py says so)
            raise
        except BrokerError as exc:        # e.g. an SQLite file where we may not write
            return self.fatal(f"failed: {exc}", errno=5, code=ipc.EXIT_FAILED)     # EIO
        self.attach(broker)
        if not self.wait_for_broker():
            return ipc.EXIT_OK
        return self.start()

    def attach(self, broker) -> None:
        self.broker = broker
        self.recovery = Recovery(broker, self.cfg.queues, self.clock)
        self.pool = Pool(self.cfg, self.node_id, self.clock, self._spawn, self.recovery, self.on_boot_failure)
        self.schedules = Schedules(self.cfg.schedules, self.cfg.queues, self.recovery.tasks, self.wall,
                                   self.cfg.max_payload)
        self.history = HistoryWriter(self.wall)
        if self.signals is not None:
            self.pool.inherit(self.signals.fds())
        if self.metrics is not None:
            self.pool.inherit(self.metrics.fileno_for_children())

    def start(self) -> int:
        self.broker.add_queues(list(self.cfg.queues))
        self.pool.top_up()
        error = self.wait_until_booted()
        if error:
            self.quick_stop()
            return self.fatal(f"failed: {error}", errno=8, code=ipc.EX_SOFTWARE)    # ENOEXEC
        if self.stopping:
            return self.loop()     # a stop during start-up drains the running jobs like any other stop
        if self.phase == Phase.STARTING:          # (a HUP meanwhile: the reload's end says READY again)
            self.enter(Phase.SERVING)
        log.info("started: %d workers on queues %s", len(self.pool.handles()), ", ".join(self.cfg.queues))
        self.notifier.ready(self.status_line())
        return self.loop()

    def fatal(self, status: str, errno: int, code: int) -> int:
        log.error("start-up %s", redact_text(status))
        self.notifier.fatal(redact_text(status), errno=errno)
        return code

    def wait_for_broker(self) -> bool:
        """At start: True once the broker answers, False if told to stop meanwhile.
        Raises DataFormatError if its data is of a newer format (data_format.py)."""
        def reach():
            self.broker.ping()
            self.broker.check_format()

        def down(exc):
            self.notifier.status(redact_text(f"waiting for broker: {exc}"))
        return wait_until_up(reach, lambda delay: self.sleep(delay) and self.stopping, down)

    def wait_until_booted(self) -> str | None:
        while not self.pool.all_ready():
            self.turn(1.0)
            if self.stopping:
                return None
            failed = self.pool.booting_failures()
            if failed:
                return f"queue {failed[0].queue}: {failed[0].boot_error}"
        return None

    # -- the phase: every change of it goes through here
    @property
    def stopping(self) -> bool:
        return self.phase.stopping

    @property
    def reloading(self) -> bool:
        return self.phase == Phase.RELOADING

    def enter(self, phase: Phase) -> None:
        self.phase = move(self.phase, phase)

    # -- the loop
    def loop(self) -> int:
        timeout = self.next_timeout()
        while True:
            self.turn(timeout)
            if self.stopping and not self.pool.handles():
                return self.finish()
            timeout = self.judge()

    def judge(self) -> float:
        """This turn's decisions, all on one reading of every worker's scoreboard;
        returns how long the next turn may wait."""
        self.pool.look()
        try:
            if self.stopping:
                self.stop_step()
            else:
                self.maintain()
            return self.next_timeout()
        finally:
            self.pool.end_look()

    def turn(self, timeout: float) -> None:
        """Wait for anything, then handle signals, reports, dead children, dispatch."""
        pool = self.pool
        pool.begin_turn()
        fds = [self.signals, *pool.fds()]
        if self.metrics is not None:
            fds += self.metrics.fds()
        readable = self.select(fds, timeout)
        for signum in self.signals.drain():
            self.handle_signal(signum)
        for h in pool.handles():
            if h.report.fd in readable:
                pool.on_reports(h)
        for pid, status in self._reap():
            pool.on_exit(pid, status)
        self.pump(readable)
        if self.metrics is not None and self.metrics.wants_counts(readable):
            self.read_counts_for_metrics()

    def select(self, fds, timeout):
        return proc.readable(fds, max(0.0, timeout))

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
        t = min(self.timers.next_in(), 1.0, self.pool.timeout(now))
        if self.stop_deadline is not None:
            t = min(t, self.stop_deadline - now)
        if not self.stopping:
            # a due tick waits for the broker gate, not in a busy loop
            t = min(t, max(self.schedules.next_in(), 0.0 if self.gate.may_call() else self.gate.retry_at - now))
        return max(0.0, t)

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
        self.apply_config(new, self.generation)
        self.gate.call(lambda: self.broker.add_queues(list(new.queues)))
        self.enter(Phase.RELOADING)

    def end_reload(self, error: str = "") -> None:
        if self.phase == Phase.RELOADING:
            self.enter(Phase.SERVING)
        if error:
            error = redact_text(error)
            log.error("%s", error)
            self.reload_status.write("failed", error)
            self.notifier.send("READY=1", f"STATUS={error}")
        else:
            log.info("reload complete: generation %d serving", self.generation)
            self.reload_status.write("done")
            self.notifier.ready(self.status_line())

    def revert_reload(self) -> None:
        """Back to the configuration that served before the reload, all of it."""
        self.apply_config(*self.pool.revert())

    def apply_config(self, cfg, generation: int) -> None:
        """Every collaborator a configuration reaches, in one list: a reload and its
        revert change the same things. (self.generation only counts up: a reverted
        reload's workers keep theirs while they retire.)"""
        self.cfg = cfg
        self.recovery.configure(cfg.queues)
        self.pool.configure(cfg, generation)
        self.schedules.configure(cfg.schedules, cfg.queues)
        logsetup.set_level(cfg.log.level)

    # -- stopping
    def abandon_reload(self) -> None:
        """A stop while a reload runs: the reload ends there, failed, so `mpqueue reload`
        (systemctl reload) says so at once instead of waiting out its timeout."""
        if self.phase == Phase.RELOADING:
            self.reload_status.write("failed", "the service is stopping: the reload did not complete")

    def graceful_stop(self) -> None:
        """Stop reserving; running jobs may finish until shutdown_timeout."""
        log.info("stopping: waiting up to %g s for running jobs", self.cfg.shutdown_timeout)
        self.abandon_reload()
        self.enter(Phase.DRAINING)
        self.stop_deadline = self.clock() + self.cfg.shutdown_timeout
        self.notifier.stopping(f"stopping: draining {busy_count(self.pool.boards())} running jobs")
        self.pool.stop_all()

    def quick_stop(self) -> None:
        self.abandon_reload()
        self.enter(Phase.QUICK)
        self.notifier.stopping("stopping now")
        self.pool.kill_all(KillReason.SHUTDOWN)
        while self.pool.handles():
            for pid, status in self._reap():
                self.pool.on_exit(pid, status)
            if self.pool.handles():
                self.select([], 0.01)

    def stop_step(self) -> None:
        self.pool.enforce_timeouts()      # a job past its timeout is killed while others drain
        remaining = self.stop_deadline - self.clock()
        if remaining <= 0:
            log.warning("shutdown_timeout reached: killing %d workers, their jobs go back to the queue",
                        len(self.pool.handles()))
            self.pool.kill_all(KillReason.SHUTDOWN)
        else:
            self.notifier.extend_timeout(max(5.0, remaining + 5))

    def finish(self) -> int:
        self.pool.finish()
        self.recovery.flush()
        try:        # the last broker call, workers gone: the node stops being listed now, not at its ttl
            self.broker.forget_node(self.node_id)
        except BrokerError as exc:
            log.warning("stopping: this node stays listed until its heartbeat expires: %s", exc)
        if self.metrics is not None:
            self.metrics.close()
        log.info("stopped")
        return ipc.EXIT_OK

    # -- workers
    def on_boot_failure(self, h, delay: float) -> None:
        """The pool saw a worker die before it was ready; it retries after `delay`."""
        if self.reloading and h.generation == self.generation:
            self.end_reload(f"reload failed: queue {h.queue}: {h.boot_error}; the previous workers keep serving")
            self.revert_reload()
            return
        if not self.stopping:
            log.error("worker %s/%d failed to boot (%s); retrying in %.1f s", h.queue, h.index, h.boot_error,
                      delay, extra={"queue": h.queue, "worker": h.index})
            self.notifier.status(redact_text(f"queue {h.queue}: {h.boot_error}"))

    # -- upkeep while running
    def maintain(self) -> None:
        self.pool.top_up()
        self.pool.retire_replaced()
        if self.pool.generation_ready() and self.reloading:
            self.end_reload()
        self.pool.enforce_timeouts()
        if self.timers.fire("cancels", CANCELS_EVERY):
            self.gate.call(self.kill_cancelled)
        if self.timers.fire("reap", reap_every(self.cfg, REAP_EVERY)):
            self.gate.call(self.reap_expired)
        if self.timers.fire("renew", renew_every(self.cfg, RENEW_EVERY)):
            self.gate.call(self.renew_leases)
        if self.timers.fire("heartbeat", HEARTBEAT_EVERY):
            self.gate.call(self.heartbeat)
        if self.recovery.pending() and self.gate.may_call() and not self.recovery.flush():
            self.gate.defer()
        if self.schedules.due():
            self.gate.call(lambda: self.schedules.run(self.broker))
        if self.timers.fire("count", COUNT_EVERY) and self.notifier.enabled:     # only STATUS= shows it
            self.gate.call(lambda: self.look.read(self.broker, self.cfg.queues))
        if self.timers.fire("status", STATUS_EVERY):
            self.notifier.status(self.status_line())
        if self.metrics is not None and self.timers.fire("metrics", 1.0):
            self.publish_metrics()
        if self.watchdog_every and self.timers.fire("watchdog", self.watchdog_every):
            # Only this loop pings, in a turn that has read every worker's scoreboard
            # (Pool.look): a frozen or stuck supervisor falls silent and systemd
            # restarts it. A broker outage alone keeps the loop turning, so it keeps
            # pinging: restarting would not fix Redis.
            self.notifier.watchdog()

    def pump(self, readable) -> None:
        self.pool.pump(readable, self.stopping, self.gate.record)

    def reap_expired(self) -> None:
        if any([self.recovery.reap_expired(q) for q in self.cfg.queues]):
            self.timers.again("reap", 0.0)      # more leases have expired: go on at the next turn

    def renew_leases(self) -> None:
        for queue, consumers in self.pool.holders().items():
            q = self.recovery.queues.get(queue) or next(iter(self.cfg.queues.values()))
            self.broker.renew(queue, consumers, q.timeout + self.cfg.lease_grace)

    def kill_cancelled(self) -> None:
        """Look for cancel requests that say kill, only in queues running jobs here."""
        for queue in self.pool.holders():
            kills = {job_id for job_id, mode in self.broker.cancel_requests(queue).items() if mode == "kill"}
            if kills:
                self.pool.kill_cancelled(queue, kills)

    def heartbeat(self) -> None:
        info = node_info(self.cfg, self.pool.boards(), self.pool.totals, self.node_id, self.started_at)
        self.broker.heartbeat(self.node_id, info, ttl=HEARTBEAT_EVERY * 6)
        self.history.beat(self.broker, self.known_queues())      # a point a minute, on the same timer

    # -- reporting (status.py, metrics.py)
    def publish_metrics(self) -> None:
        self.metrics.publish(metricsmod.snapshot(self.pool, self.recovery, self.known_queues(), self.gate.ok,
                                                 self.schedules.counters()))

    def read_counts_for_metrics(self) -> None:
        """A scrape asked: the queue counts and ages, under the gate, for the endpoint's thread."""
        self.publish_metrics()
        counts = {}
        ok = self.gate.call(lambda: counts.update(metricsmod.read_queues(self.broker, self.known_queues(),
                                                                          self.cfg.queues)))
        self.metrics.counts_read(counts if ok else None)

    def known_queues(self) -> list[str]:
        """This generation's queues, and those of older workers still draining."""
        return list(dict.fromkeys([*self.cfg.queues, *(h.queue for h in self.pool.handles())]))

    def status_line(self) -> str:
        return status_line(self.cfg, self.pool.boards(), self.pool.totals, self.look.ready, self.gate.ok,
                           self.schedules.totals() if self.cfg.schedules else None, self.look.paused)

