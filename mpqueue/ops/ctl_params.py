"""mpqctl's arguments: each bad value becomes a one-line error naming its option
(exit 2), before anything talks to the broker."""
from __future__ import annotations

import datetime as dt
import json
import math

import click

from ..core.names import is_job_id, is_queue_name, job_id_rule


class QueueName(click.ParamType):
    name = "queue"

    def convert(self, value, param, ctx):
        if not is_queue_name(value):
            self.fail(f"{value!r} is not a queue name (letters, digits, '_', '.', '-')", param, ctx)
        return value


class JobId(click.ParamType):
    name = "id"

    def convert(self, value, param, ctx):
        if not is_job_id(value):
            self.fail(f"{value!r} is not {job_id_rule()}", param, ctx)
        return value


class FiniteFloat(click.FloatRange):
    """Seconds: a FloatRange that also refuses nan and inf (which pass its bounds checks)."""

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"expected a finite number of seconds, got {value}", param, ctx)
        return value


class JsonValue(click.ParamType):
    name = "json"

    def __init__(self, kind: type):
        self.kind = kind

    def convert(self, value, param, ctx):
        if isinstance(value, self.kind):
            return value
        try:
            data = json.loads(value)
        except ValueError as exc:
            self.fail(f"not valid JSON ({exc})", param, ctx)
        except RecursionError:
            self.fail("nested too deep", param, ctx)
        if not isinstance(data, self.kind):
            want = "an array" if self.kind is list else "an object"
            self.fail(f"expected {want}, got {type(data).__name__} {value!r:.80}", param, ctx)
        return data


class IsoTime(click.ParamType):
    name = "iso8601"

    def convert(self, value, param, ctx):
        if isinstance(value, dt.datetime):
            return value
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2030-01-31T08:00:00+01:00", param, ctx)
        try:
            # A time without an offset is local time, as a person typing it means; the
            # first and last days of the calendar have no local time (nor an epoch second).
            when = when if when.tzinfo else when.astimezone()
            when.timestamp()
        except (ValueError, OverflowError, OSError):
            self.fail(f"{value!r} is outside the times this host can convert: give one within years 2..9998, "
                      "or with an offset such as +00:00", param, ctx)
        return when


def _json_flag(ctx, param, value):
    # ctx.meta is shared by the whole context chain, so the flag counts whether
    # it came before or after the command.
    if value:
        ctx.meta["mpqctl.json"] = True


json_option = click.option("--json", is_flag=True, expose_value=False, callback=_json_flag,
                           help="Print JSON (shapes: see the command's help).")


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")



def check_push_options(task, delay, eta) -> None:
    if ":" not in task:
        raise click.BadParameter(f"expected a name like 'module:function', got {task!r}", param_hint="'TASK'")
    if delay is not None and not math.isfinite(delay):
        raise click.BadParameter(f"expected a finite number of seconds, got {delay}", param_hint="'--delay'")
    if delay is not None and eta is not None:
        raise click.UsageError("give --delay or --eta, not both")
