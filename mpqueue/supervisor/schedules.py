"""The supervisor's schedules role: when each schedule's next tick falls, and
claiming due ticks in the broker.

Every node of a service runs every schedule; there is no leader. Each node
claims each tick it computes with Broker.tick, one atomic step that records the
claim and pushes the job, so the first claim wins and the others read "taken":
a tick fires once however many nodes run, and a node that dies after claiming
has already pushed. Ticks are wall-clock times, read on this host's clock
corrected by the broker's (every reply carries the broker's time), so nodes
with skewed clocks still agree on when a tick is due.

If ticks were missed (every node down, the broker unreachable, a stalled
loop), only the latest one is tried: it fires if it is at most misfire_grace
late, else it is skipped; the older ones are skipped and counted, never fired
in a burst. Only the supervisor's loop calls this, on its injectable clock.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from ..core import envelope as jobmod

log = logging.getLogger("mpqueue.supervisor")
COUNT_CAP = 10_000       # missed ticks counted per catch-up at most (a cron's are counted one by one)
EARLY_RETRY_MS = 10      # a tick the broker's clock has not reached: try again this much later at least
DEFAULT_QUEUE = "default"


@dataclass
class Entry:
    cfg: object                  # core.schedules.ScheduleConfig
    rule: object                 # Every or Cron
    pending_ms: int              # the next tick to try (epoch ms, broker clock)
    claimed_ms: int | None = None  # the latest tick this node saw claimed (by anyone)
    fired_ms: int | None = None    # the latest tick this node fired
    not_before_ms: int = 0       # after an "early": no retry before this


class Schedules:
    def __init__(self, schedules: dict, queues, tasks: dict, wall=time.time, max_payload: int = 1 << 20):
        self.wall = wall
        self.tasks = tasks                   # task name -> public options, as workers report them
        self.max_payload = max_payload
        self.offset = 0.0                    # the broker's clock minus ours, seconds
        self.entries: dict[str, Entry] = {}
        self.fired: dict[str, int] = {}      # ticks this node fired, by schedule
        self.skipped: dict[str, int] = {}    # ticks this node found missed, by schedule
        self._warned: set = set()
        self.configure(schedules, queues)

    def now_ms(self) -> int:
        return int((self.wall() + self.offset) * 1000)

    def configure(self, schedules: dict, queues) -> None:
        """Start or reload: new and changed schedules start at their latest tick
        (the broker fires it if the schedule has a record, no node claimed it and it
        is within its grace; a schedule without a record only records it);
        unchanged ones keep their state; a changed one never retries a tick this
        node saw claimed."""
        self.queues = set(queues)
        now, entries = self.now_ms(), {}
        for name, cfg in schedules.items():
            old = self.entries.get(name)
            if old is not None and old.cfg == cfg:
                entries[name] = old
                continue
            rule = cfg.rule()
            pending = rule.latest(now)
            claimed = old.claimed_ms if old else None
            if claimed is not None and pending <= claimed:
                pending = rule.next_after(claimed)
            entries[name] = Entry(cfg, rule, pending, claimed, old.fired_ms if old else None)
            log.info("schedule %s %s: %s, task %s", name, "changed" if old else "loaded", cfg.describe(), cfg.task)
        for name in set(self.entries) - set(entries):
            log.info("schedule %s removed", name)
        self.entries = entries

    # -- when
    def next_in(self) -> float:
        """Seconds until a tick is due (inf without schedules)."""
        if not self.entries:
            return math.inf
        now = self.now_ms()
        return max(0.0, min(max(e.pending_ms, e.not_before_ms) - now for e in self.entries.values()) / 1000.0)

    def due(self) -> bool:
        return self.next_in() == 0.0

    # -- claiming
    def run(self, broker) -> None:
        """Claim every due tick. A BrokerError propagates (the loop's gate records
        it); the ticks stay due and are tried again, the latest only, when it answers."""
        for name in sorted(self.entries):
            e = self.entries[name]
            now = self.now_ms()
            if max(e.pending_ms, e.not_before_ms) <= now:
                self._claim(broker, e, now)

    def _claim(self, broker, e: Entry, now: int) -> None:
        cfg, target = e.cfg, e.pending_ms
        if e.rule.next_after(target) <= now:
            target = e.rule.latest(now)          # several missed meanwhile: only the latest may fire
        queue = self.queue_of(cfg)
        if queue is None:
            e.pending_ms = e.rule.next_after(target)
            return
        _, env = jobmod.encode(cfg.task, cfg.args, cfg.kwargs, priority=cfg.priority, scheduled_ms=target,
                               max_payload=self.max_payload)
        before = self.wall()
        result = broker.tick(queue, cfg.name, target, env, cfg.priority, int(cfg.misfire_grace * 1000))
        self.offset = result.now_ms / 1000.0 - (before + self.wall()) / 2
        if result.outcome == "early":
            e.not_before_ms = self.now_ms() + EARLY_RETRY_MS
            return
        self._record(e, target, result)

    def _record(self, e: Entry, target: int, result) -> None:
        name, previous = e.cfg.name, result.previous_ms
        claimed = max(target, previous)
        e.claimed_ms = claimed if e.claimed_ms is None else max(e.claimed_ms, claimed)
        e.pending_ms = e.rule.next_after(e.claimed_ms)
        missed = 0
        if result.outcome in ("fired", "skipped") and previous >= 0:
            missed = e.rule.count_between(previous, target, COUNT_CAP) + (result.outcome == "skipped")
        if result.outcome == "fired":
            e.fired_ms = target
            self.fired[name] = self.fired.get(name, 0) + 1
            log.info("schedule %s fired its tick of %s (%d ms late)", name, _iso(target), result.now_ms - target,
                     extra={"schedule": name, "queue": self.queue_of(e.cfg)})
        if missed:
            self.skipped[name] = self.skipped.get(name, 0) + missed
            log.warning("schedule %s: %d tick(s) missed up to %s skipped (more than misfire_grace %g s late)",
                        name, missed, _iso(target), e.cfg.misfire_grace, extra={"schedule": name})

    def queue_of(self, cfg) -> str | None:
        """The schedule's queue, else its task's declared one, else "default"; None
        (said once) when that is not a queue of this service."""
        task = self.tasks.get(cfg.task)
        if task is None and self.tasks and ("task", cfg.name) not in self._warned:
            self._warned.add(("task", cfg.name))
            log.error("schedule %s: no worker has task %s; its jobs will fail as unknown_task", cfg.name, cfg.task)
        queue = cfg.queue or (task or {}).get("queue") or DEFAULT_QUEUE
        if queue in self.queues:
            return queue
        if ("queue", cfg.name, queue) not in self._warned:
            self._warned.add(("queue", cfg.name, queue))
            log.error("schedule %s: its task's queue %r is not a queue of this service; its ticks do not fire "
                      "(set the schedule's queue:)", cfg.name, queue)
        return None

    # -- reporting
    def totals(self) -> tuple[int, int]:
        return sum(self.fired.values()), sum(self.skipped.values())

    def counters(self) -> dict:
        """(schedule, outcome) -> ticks, for the metrics."""
        out = {(n, o): 0 for n in self.entries for o in ("fired", "skipped")}     # every series from start
        out.update({(n, "fired"): v for n, v in self.fired.items()})
        out.update({(n, "skipped"): v for n, v in self.skipped.items()})
        return out


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
