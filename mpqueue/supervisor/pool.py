"""The pool: this node's worker processes (Sidekiq's manager, gunicorn's
manage_workers). It keeps every configured slot filled, reads the workers'
reports, judges each exit, kills overdue and stale workers, and has the fetch
mode's holding settle what a dead worker held. Only the supervisor's loop calls
it; it decides on the injectable clock and forks through `spawn`, so tests
drive it without processes (tests/unit/test_pool.py)."""
from __future__ import annotations

import logging
import math
import os

from .. import ipc
from ..brokers import BrokerError
from ..tally import Totals
from . import handles, reload
from .backoff import BootBackoff
from .dispatcher import Dispatcher
from .handles import KILLS, KillReason
from .holding import GrabHolding

log = logging.getLogger("mpqueue.supervisor")
STALE_AFTER = 30.0      # an idle worker silent this long is stuck: replace it (it beats every ipc.BEAT_EVERY)
# How each fetch mode holds its workers' jobs (holding.py), by the queue's `mode`.
HOLDINGS = {"grab": GrabHolding, "dispatch": Dispatcher}


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
        self._dead_at_boot: list = []              # this turn's workers that died before they were ready
        self._close_in_child: list[int] = []       # the supervisor's own descriptors
        self._reading: dict | None = None          # handle -> Board, while a look lasts

    # -- the loop's view
    def begin_turn(self) -> None:
        """A new loop turn: forget the last turn's boot failures."""
        self._dead_at_boot = []

    def booting_failures(self) -> list:
        """Workers that died this turn before they were ready, with the error they gave."""
        return [h for h in self._dead_at_boot if h.boot_error]

    def inherit(self, fds) -> None:
        """Descriptors of the supervisor's own that every forked worker must close."""
        self._close_in_child += list(fds)

    def fds(self) -> list:
        """What the loop waits on for the pool: report pipes and the holdings' wake-ups."""
        fds = [h.report.fd for h in self.workers.values()]
        for holding in self.holdings.values():
            fds += holding.fds()
        return fds

    def timeout(self, now: float) -> float:
        """Seconds until a job's deadline or a holding's next turn is due."""
        return min([self.next_deadline(now), *(d.timeout(now) for d in self.holdings.values())])

    def pump(self, readable, stopping: bool, record) -> None:
        """Each holding's turn with the broker; `record(ok, error)` tells the gate how it answered."""
        for holding in self.holdings.values():
            try:
                if holding.pump(readable, stopping):
                    record(True)
            except BrokerError as exc:
                record(False, exc)
                holding.broker_failed()

    def finish(self) -> None:
        """The service stops: each holding delivers what it owes."""
        for holding in self.holdings.values():
            holding.finish()

    # -- one reading of the scoreboards per turn
    def look(self) -> None:
        """Read every worker's scoreboard once, for this turn's decisions (each read
        decodes every slot: up to a thousand with high concurrency). Until end_look(),
        every decider uses this reading."""
        self._reading = {h: h.scoreboard.read() for h in self.workers.values()}

    def end_look(self) -> None:
        self._reading = None

    def board(self, h) -> ipc.Board:
        """The worker's scoreboard as this turn's look read it; outside a look (or for a
        worker started since) read now."""
        if self._reading is None:
            return h.scoreboard.read()
        if h not in self._reading:
            self._reading[h] = h.scoreboard.read()
        return self._reading[h]

    def boards(self) -> list:
        """(handle, Board) of every live worker."""
        return [(h, self.board(h)) for h in self.workers.values()]

    def handles(self) -> list:
        return list(self.workers.values())

    def configure(self, cfg, generation: int) -> None:
        """A reload: the new configuration's workers are a new generation."""
        self.cfg, self.generation = cfg, generation
        for q in cfg.queues.values():
            holding = self.holdings.get((q.name, q.mode))
            if holding is not None:
                holding.configure(q, cfg.lease_grace)

    def revert(self) -> tuple:
        """A reload failed: stop the new generation's workers still booting (those
        already ready retire as the serving configuration's workers replace them), and
        return (config, generation) that served before it, for the supervisor to apply."""
        cfg, generation = self.serving
        for h in self.workers.values():
            if h.generation == self.generation and not h.ready:
                h.kill(KillReason.SHUTDOWN)
        return cfg, generation

    # -- starting workers
    def holding_for(self, q):
        """One per (queue, mode): old workers of a queue whose mode a reload changed keep theirs."""
        key = (q.name, q.mode)
        if key not in self.holdings:
            self.holdings[key] = HOLDINGS[q.mode].for_queue(self.recovery.broker, self.recovery, q,
                                                            self.cfg.lease_grace, self.node_id, self.clock)
        return self.holdings[key]

    def spawn(self, queue_cfg, index: int, cfg=None, generation: int | None = None) -> None:
        inherited = list(self._close_in_child)
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
            elif kind == ipc.WANT:
                h.holding.jobs_wanted(h, msg["n"])

    def on_exit(self, pid: int, status: int) -> None:
        h = self.workers.pop(pid, None)
        if h is None:
            return
        self.on_reports(h)               # its last words (e.g. a finished job) before we judge it
        board = h.scoreboard.read()
        self.totals["done"] += board.done
        self.totals["failed"] += board.failed
        kind = KILLS[h.killed_for].held if h.killed_for else "crashed"
        h.holding.worker_gone(h, board, kind)
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        self.count_exit(h, clean)
        h.close()
        if not h.ready and h.killed_for == KillReason.SHUTDOWN:
            return                       # stopped while booting: not a boot failure
        if not h.ready:
            self._dead_at_boot.append(h)
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
        if h.killed_for == KillReason.SHUTDOWN:
            return                                  # a stop, not a restart
        if not h.ready:
            reason = "boot_failed"
        elif h.killed_for:
            reason = KILLS[h.killed_for].restart
        elif not clean:
            reason = "crashed"
        else:
            reason = h.tally.exit_reason() or ("reload" if h.replaced else "")
        if reason:
            self.restarts[(h.queue, reason)] = self.restarts.get((h.queue, reason), 0) + 1

    # -- judging the living
    def enforce_timeouts(self) -> None:
        now = self.clock()
        for h, board in self.boards():
            if h.ready and not board.busy and now - board.beat > STALE_AFTER and h.killed_for is None:
                log.error("worker %s/%d (pid %d) silent for %.0f s while idle: replacing it", h.queue, h.index,
                          h.pid, now - board.beat, extra={"queue": h.queue, "worker": h.index})
                h.kill(KillReason.STALE)
            overdue = [s for s in board.running if now >= s.deadline()]
            if overdue and h.killed_for is None:
                self.kill_for_jobs(h, KillReason.TIMEOUT, overdue, len(board.running))

    def kill_cancelled(self, queue: str, kills: set) -> None:
        """Kill the workers running jobs of `queue` whose cancel request says kill
        (Client.cancel(kill=True)). Its standing request makes the job's settling
        end it as cancelled (no retry, no failure hook, no attempt question)."""
        for h, board in self.boards():
            if h.queue != queue or h.killed_for is not None or not kills & {s.job_id for s in board.running}:
                continue
            # The turn's reading was taken before the broker was asked for the requests
            # (up to its timeout ago): read this worker afresh, so one whose job has
            # finished meanwhile is not killed for it. Rare: only a kill request costs it.
            board = h.scoreboard.read()
            doomed = [s for s in board.running if s.job_id in kills]
            if doomed:
                self.kill_for_jobs(h, KillReason.CANCELLED, doomed, len(board.running))

    def kill_for_jobs(self, h, reason: KillReason, slots, running: int) -> None:
        """Kill a worker for some of its jobs (overdue, or cancelled with kill): each
        is settled at once as KILLS says; whatever else it was running goes back
        unspent when it is reaped."""
        h.kill(reason)
        for slot in slots:
            self._log_kill(h, reason, slot, running)
            h.overdue.add(slot.job_id)
            held = h.holding.running(h, slot)
            if held is not None:
                self.recovery.settle(h.queue, held, KILLS[reason].job)

    @staticmethod
    def _log_kill(h, reason: KillReason, slot, running: int) -> None:
        if reason == KillReason.TIMEOUT:
            log.error("job %s exceeded its timeout (%.3g s): killed worker %s/%d%s", slot.job_id, slot.timeout,
                      h.queue, h.index, f", {running - 1} other running jobs go back unspent" if running > 1 else "",
                      extra={"queue": h.queue, "job_id": slot.job_id, "outcome": "timeout"})
        else:
            log.warning("killed worker %s/%d (pid %d) to cancel job %s (kill)", h.queue, h.index, h.pid,
                        slot.job_id, extra={"queue": h.queue, "job_id": slot.job_id})

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
                h.kill(KillReason.SHUTDOWN)

    def kill_all(self, reason: KillReason) -> None:
        for h in self.workers.values():
            h.kill(reason)

    def holders(self) -> dict[str, list[str]]:
        """queue -> the consumers whose held jobs must keep their leases: every live
        worker's (holding.consumers_of) of a queue where one is busy (a batch may be
        waiting in a worker's hands), and a dispatcher's that has jobs out. Queues
        with nothing running are left out, so an idle service makes no renewal call."""
        out: dict[str, list[str]] = {h.queue: [] for h, board in self.boards() if board.busy}
        for h in self.workers.values():
            if h.queue in out:
                out[h.queue] += h.holding.consumers_of(h)
        for (queue, _), holding in self.holdings.items():
            if holding.holders():
                out.setdefault(queue, []).extend(holding.holders())
        return {q: consumers for q, consumers in out.items() if consumers}

    def next_deadline(self, now: float) -> float:
        """Seconds until the first running job's deadline (inf if none runs)."""
        return min([math.inf, *(board.deadline() - now for _, board in self.boards())])
