"""The pool: this node's worker processes (Sidekiq's manager, gunicorn's
manage_workers). It keeps every configured slot filled, reads the workers'
reports, judges each exit, kills overdue and stale workers, and has the fetch
mode's holding settle what a dead worker held. Only the supervisor's loop calls
it; it decides on the injectable clock and forks through `spawn`, so tests
drive it without processes."""
from __future__ import annotations

import logging
import math
import os

from .. import ipc
from ..tally import Totals
from . import handles, reload
from .backoff import BootBackoff
from .dispatcher import Dispatcher
from .holding import GrabHolding

log = logging.getLogger("mpqueue.supervisor")
STALE_AFTER = 30.0      # an idle worker silent this long is stuck: replace it (it beats every ipc.BEAT_EVERY)


class Pool:
    def __init__(self, cfg, node_id: str, clock, spawn, recovery, on_boot_failure):
        self.cfg, self.generation = cfg, 0
        # The last configuration whose every worker was ready, and its generation: until
        # a reload completes its workers keep a full complement (keep_serving), and a
        # reload that fails goes back to it (revert).
        self.serving = (cfg, 0)
        self.node_id, self.clock, self._spawn = node_id, clock, spawn
        self.recovery = recovery
        self.on_boot_failure = on_boot_failure     # (handle, delay before the next try)
        self.workers: dict[int, handles.WorkerHandle] = {}
        self.holdings: dict[tuple[str, str], object] = {}     # (queue, mode) -> Holding
        self.backoff = BootBackoff(clock)
        self.totals = {"done": 0, "failed": 0}     # of workers gone since start
        self.retired = Totals()                    # the job counters of workers gone (metrics)
        self.restarts: dict[tuple[str, str], int] = {}     # (queue, reason) -> workers replaced
        self.dead_at_boot: list = []
        self.close_in_child: list[int] = []        # the supervisor's own descriptors

    def handles(self) -> list:
        return list(self.workers.values())

    def configure(self, cfg, generation: int) -> None:
        """A reload: the new configuration's workers are a new generation."""
        self.cfg, self.generation = cfg, generation
        for q in cfg.queues.values():
            holding = self.holdings.get((q.name, q.mode))
            if holding is not None:
                holding.configure(q, cfg.lease_grace)

    def revert(self) -> None:
        """A reload failed: the configuration that served before it is the current one
        again. The new generation's workers still booting are stopped; those already
        ready retire as the serving configuration's workers replace them."""
        cfg, generation = self.serving
        for h in self.workers.values():
            if h.generation == self.generation and not h.ready:
                h.kill("shutdown")
        self.configure(cfg, generation)

    # -- starting workers
    def holding_for(self, q):
        """One per (queue, mode): old workers of a queue whose mode a reload changed keep theirs."""
        key = (q.name, q.mode)
        if key not in self.holdings:
            broker = self.recovery.broker
            if q.mode == "dispatch":
                holding = Dispatcher(broker, self.recovery, q, self.cfg.lease_grace, f"{self.node_id}/dispatch",
                                     self.clock)
            else:
                holding = GrabHolding(broker, self.recovery)
            self.holdings[key] = holding
        return self.holdings[key]

    def spawn(self, queue_cfg, index: int, cfg=None, generation: int | None = None) -> None:
        inherited = list(self.close_in_child)
        for h in self.workers.values():
            inherited += [h.report.fd, h.control.fd]
        cfg, generation = cfg or self.cfg, self.generation if generation is None else generation
        h = self._spawn(cfg, queue_cfg, index, self.node_id, generation, inherited, self.clock())
        h.holding = self.holding_for(queue_cfg)
        self.workers[h.pid] = h

    def top_up(self) -> None:
        """Start a worker for every slot of the current generation that has none,
        unless its boot back-off says wait."""
        for q in self.cfg.queues.values():
            present = {h.index for h in self.workers.values()
                       if h.queue == q.name and h.generation == self.generation and not h.retiring}
            for i in range(q.workers):
                if i not in present and self.backoff.may_start((q.name, i, self.generation)):
                    self.spawn(q, i)
        if self.serving[1] != self.generation:
            self.keep_serving()

    def keep_serving(self) -> None:
        """During a reload: an old worker that exits (max_jobs, memory_limit, a crash)
        while the new generation is not yet ready to take its place is replaced under
        the configuration that served, so a reload whose workers never boot does not
        let the queue run dry."""
        cfg, generation = self.serving
        for q in cfg.queues.values():
            keep = min(q.workers, reload.others_to_keep(self.handles(), self.cfg, self.generation, q.name))
            live = {h.index for h in self.workers.values()
                    if h.queue == q.name and h.generation != self.generation and not h.retiring}
            free = [i for i in range(q.workers) if i not in live]
            for i in free[:max(0, keep - len(live))]:
                if self.backoff.may_start((q.name, i, generation)):
                    self.spawn(q, i, cfg, generation)

    def all_ready(self) -> bool:
        return all(h.ready for h in self.workers.values())

    # -- what workers say, and how they end
    def on_reports(self, h) -> None:
        try:
            messages = h.report.receive()
        except OSError:
            messages = None
        for msg in messages or []:
            kind = msg.get("type")
            if kind == ipc.READY:
                h.ready = True
                self.backoff.booted(h.boot_slot)
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
        board = h.scoreboard.read()
        self.totals["done"] += board.done
        self.totals["failed"] += board.failed
        # killed for a job's timeout or cancel: that job is settled already, its siblings go back unspent
        kind = {"timeout": "timeout", "cancelled": "timeout", "shutdown": "shutdown"}.get(h.killed_for, "crashed")
        h.holding.worker_gone(h, board, kind)
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        self.count_exit(h, clean)
        h.close()
        if not h.ready and h.killed_for == "shutdown":
            return                       # stopped while booting: not a boot failure
        if not h.ready:
            self.dead_at_boot.append(h)
            h.boot_error = h.boot_error or handles.describe(status)
            self.on_boot_failure(h, self.backoff.failed(h.boot_slot))
        elif not clean and not h.killed_for:
            log.error("worker %s/%d (pid %d) %s; restarting it", h.queue, h.index, pid, handles.describe(status),
                      extra={"queue": h.queue, "worker": h.index, "pid": pid})

    def count_exit(self, h, clean: bool) -> None:
        """Fold a gone worker's job counters into the totals, and count why it was replaced."""
        if h.tally is None:
            return
        self.retired.merge(h.tally.read())
        if h.killed_for == "shutdown":
            return                                  # a stop, not a restart
        if not h.ready:
            reason = "boot_failed"
        elif h.killed_for in ("timeout", "stale", "cancelled"):
            reason = h.killed_for
        elif not clean:
            reason = "crashed"
        else:
            reason = h.tally.exit_reason() or ("reload" if h.replaced else "")
        if reason:
            self.restarts[(h.queue, reason)] = self.restarts.get((h.queue, reason), 0) + 1

    # -- judging the living
    def enforce_timeouts(self) -> None:
        now = self.clock()
        for h in list(self.workers.values()):
            board = h.scoreboard.read()
            if h.ready and not board.busy and now - board.beat > STALE_AFTER and h.killed_for is None:
                log.error("worker %s/%d (pid %d) silent for %.0f s while idle: replacing it", h.queue, h.index,
                          h.pid, now - board.beat, extra={"queue": h.queue, "worker": h.index})
                h.kill("stale")
            overdue = [s for s in board.running if now >= s.deadline()]
            if overdue and h.killed_for is None:
                self.kill_overdue(h, overdue, len(board.running))

    def kill_overdue(self, h, overdue, running: int) -> None:
        """Kill a worker for its overdue jobs: each fails as a timeout; whatever
        else it was running goes back unspent when it is reaped."""
        h.kill("timeout")
        for slot in overdue:
            log.error("job %s exceeded its timeout (%.3g s): killed worker %s/%d%s", slot.job_id, slot.timeout,
                      h.queue, h.index, f", {running - 1} other running jobs go back unspent" if running > 1 else "",
                      extra={"queue": h.queue, "job_id": slot.job_id, "outcome": "timeout"})
            h.overdue.add(slot.job_id)
            held = h.holding.running(h, slot)
            if held is not None:
                self.recovery.settle(h.queue, held, "timeout")

    def kill_cancelled(self, queue: str, kills: set) -> None:
        """Kill the workers running jobs of `queue` whose cancel request says kill
        (Client.cancel(kill=True)). Each such job is settled at once; its standing
        request makes that settling end it as cancelled (no retry, no failure hook,
        no attempt question). Whatever else the worker ran goes back unspent."""
        for h in list(self.workers.values()):
            if h.queue != queue or h.killed_for is not None:
                continue
            doomed = [s for s in h.scoreboard.read().running if s.job_id in kills]
            if not doomed:
                continue
            h.kill("cancelled")
            for slot in doomed:
                log.warning("killed worker %s/%d (pid %d) to cancel job %s (kill)", h.queue, h.index, h.pid,
                            slot.job_id, extra={"queue": h.queue, "job_id": slot.job_id})
                h.overdue.add(slot.job_id)
                held = h.holding.running(h, slot)
                if held is not None:
                    self.recovery.settle(h.queue, held, "crashed")

    def retire_replaced(self) -> None:
        """Ask old-generation workers to finish and exit as new ones are ready for their places."""
        for h in reload.to_retire(self.handles(), self.cfg, self.generation):
            h.replaced = True
            h.stop()

    def generation_ready(self) -> bool:
        """Every slot of the current configuration has a ready worker of its generation:
        it is the serving one from now on."""
        if not reload.complete(self.workers.values(), self.cfg, self.generation):
            return False
        self.serving = (self.cfg, self.generation)
        return True

    def stop_all(self) -> None:
        """Ask every worker to finish and exit. One still booting (a slow start hook)
        holds no job and would read the request only once booted: it is killed."""
        for h in self.workers.values():
            if h.ready:
                h.stop()
            else:
                h.kill("shutdown")

    def kill_all(self, reason: str) -> None:
        for h in self.workers.values():
            h.kill(reason)

    def holders(self) -> dict[str, list[str]]:
        """queue -> the consumers whose held jobs must keep their leases: every live
        worker of a queue where one is busy (a batch may be waiting in a worker's
        hands), and a dispatcher that has jobs out. Queues with nothing running
        are left out, so an idle service makes no renewal call."""
        out: dict[str, list[str]] = {}
        for h in self.workers.values():
            if h.scoreboard.read().busy:
                out.setdefault(h.queue, [])
        for h in self.workers.values():
            if h.queue in out and h.holding.mode == "grab":
                out[h.queue].append(h.consumer)
        for (queue, _), holding in self.holdings.items():
            if holding.holders():
                out.setdefault(queue, []).extend(holding.holders())
        return {q: consumers for q, consumers in out.items() if consumers}

    def next_deadline(self, now: float) -> float:
        """Seconds until the first running job's deadline (inf if none runs)."""
        return min([math.inf, *(h.scoreboard.read().deadline() - now for h in self.workers.values())])
