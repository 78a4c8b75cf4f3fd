"""What `mpqctl schedules --json` prints for each schedule, and the dashboard
shows: its settings from the service's config, its last claimed and fired ticks
from the broker, and its next tick computed here. One shape for both."""
from __future__ import annotations

import time


def schedule_rows(cfg, broker, now: float | None = None) -> list[dict]:
    """One dict per schedule of `cfg`, by name. The broker keeps a schedule's record
    in the queue its ticks fire on; every queue of the service is read, and the most
    recent record counts (a schedule whose queue changed keeps its history)."""
    now_ms = int((time.time() if now is None else now) * 1000)
    records: dict[str, tuple[int, int, str]] = {}
    if cfg.schedules:
        for queue in cfg.queues:
            for name, (last, fired) in broker.ticks(queue).items():
                if name not in records or last > records[name][0]:
                    records[name] = (last, fired, queue)
    rows = []
    for name, s in sorted(cfg.schedules.items()):
        last, fired, queue = records.get(name, (None, None, None))
        rule = s.rule()
        after = max(now_ms, last) if last is not None else now_ms
        rows.append({"name": name, "task": s.task, "cron": s.cron, "every": s.every,
                     "timezone": s.timezone if s.cron else None, "schedule": s.describe(),
                     "queue": s.queue or queue, "priority": s.priority, "misfire_grace": s.misfire_grace,
                     "last_fired_at": fired / 1000.0 if fired else None,
                     "last_tick_at": last / 1000.0 if last is not None else None,
                     "next_at": rule.next_after(after) / 1000.0})
    return rows
