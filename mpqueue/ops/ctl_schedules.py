"""`mpqctl schedules`: each schedule of the service, its last and next tick."""
from __future__ import annotations

import click

from .common import Fail as CtlError
from .ctl_params import json_option
from .ctl_target import emit, pass_target
from .ctl_text import _table, _when
from .schedview import schedule_rows


@click.command()
@json_option
@pass_target
def schedules(target):
    """List the service's schedules (it needs --config or --service) with the
    last tick fired (by any node) and the next one due.

    \b
    JSON: [{"name": name, "task": name, "cron": expr or null, "every": seconds or null,
            "timezone": name or null (null with cron: the host's), "schedule": text,
            "queue": name or null (null: the task's, not yet fired), "priority": n,
            "misfire_grace": seconds, "last_fired_at": epoch or null,
            "last_tick_at": epoch or null (the last tick claimed, fired or skipped),
            "next_at": epoch}]
    """
    if target.config is None:
        raise CtlError("schedules live in the service's config: give --config FILE or --service NAME")
    rows = schedule_rows(target.config, target.broker)
    emit(rows, lambda: _text(rows))


def _text(rows) -> str:
    if not rows:
        return "no schedules"
    return _table(["NAME", "SCHEDULE", "TASK", "QUEUE", "LAST FIRED", "NEXT"],
                  [[r["name"], r["schedule"], r["task"], r["queue"] or "-", _when(r["last_fired_at"]),
                    _when(r["next_at"])] for r in rows])
