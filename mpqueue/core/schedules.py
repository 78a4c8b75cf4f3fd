"""Periodic jobs: a schedule's settings (the YAML `schedules:` key) and when its
ticks fall. Pure: no clock of its own, no broker; times are epoch milliseconds.

`every: N` ticks at the multiples of N seconds since the Unix epoch, so every
node computes the same tick times whatever its time zone or start time.

`cron:` (five fields, parsed by croniter) is matched against the wall clock of
`timezone` (default: the host's). Daylight-saving time:
- a wall-clock time that does not exist (the spring-forward gap, e.g. 02:30 in
  Europe/Berlin on the last Sunday of March) fires at the moment of the change
  (03:00 local); ticks that fall together fire once;
- a wall-clock time that occurs twice (the fall-back repeat) fires once, at its
  first occurrence.
The cron fields are matched on naive wall-clock times (croniter's plain calendar
arithmetic, the same in every croniter version) and mapped to instants here, so
the behaviour does not depend on croniter's own time-zone handling.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import re
import zoneinfo
from dataclasses import dataclass, field

UTC = dt.timezone.utc
DEFAULT_MISFIRE_GRACE = 60.0
MIN_EVERY = 1.0          # seconds; ordinary lateness of a tick is milliseconds
MAX_EVERY = 315_576_000           # ten years: every tick stays a date Python can show (year <= 9999)
DAY_MS = 86_400_000


@dataclass(frozen=True)
class ScheduleConfig:
    name: str
    task: str                            # "module:function"
    cron: str | None = None              # five fields
    every: float | None = None           # seconds >= 1, epoch-aligned
    timezone: str | None = None          # an IANA name; None: the host's (cron only)
    queue: str | None = None             # None: the task's declared queue, else "default"
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    priority: int = 0
    misfire_grace: float = DEFAULT_MISFIRE_GRACE   # seconds a tick may still fire late

    def rule(self):
        return Every(self.every) if self.every is not None else Cron(self.cron, zone(self.timezone))

    def describe(self) -> str:
        """'cron "0 3 * * *" Europe/Berlin' or 'every 30 s'."""
        if self.every is not None:
            return f"every {self.every:g} s"
        return f'cron "{self.cron}" {self.timezone or host_zone_name()}'


# -- time zones ---------------------------------------------------------------

def zone(name: str | None) -> dt.tzinfo:
    """The named zone, or the host's (TZ, else /etc/localtime, else UTC)."""
    if name:
        return zoneinfo.ZoneInfo(name)
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


def host_zone_name() -> str:
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        return tz
    try:
        target = os.path.realpath("/etc/localtime")
        return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "UTC"
    except OSError:
        return "UTC"


def check_zone(name) -> str:
    """The name if zoneinfo knows it, else ValueError."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(name)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(name) from None
    return name


# -- the two rules --------------------------------------------------------------

class Every:
    """Ticks at the multiples of `seconds` since the epoch."""

    def __init__(self, seconds: float):
        self.step = int(round(seconds * 1000))

    def latest(self, now_ms: int) -> int:
        """The last tick at or before now_ms."""
        return now_ms - now_ms % self.step

    def next_after(self, t_ms: int) -> int:
        return self.latest(t_ms) + self.step

    def count_between(self, after_ms: int, before_ms: int, cap: int) -> int:
        """Ticks strictly between the two."""
        if before_ms <= after_ms:
            return 0
        n = (self.latest(before_ms - 1) - self.latest(after_ms)) // self.step
        return max(0, min(cap, n))


# A cron field part that croniter reads as random or hashed: R, H, R(1-5), H/15, ...
_RANDOM = re.compile(r"[RH](\(|/|$)", re.IGNORECASE)


def check_cron(expr) -> str:
    """A five-field expression croniter accepts and that ever fires; else ValueError(why)."""
    from croniter import croniter
    if not isinstance(expr, str) or len(expr.split()) != 5:
        raise ValueError("five fields (minute hour day-of-month month day-of-week)")
    if any(_RANDOM.match(part) for field in expr.split() for part in field.split(",")):
        raise ValueError("fixed fields: croniter's R (random) and H (hashed) are drawn anew at each "
                         "computation and on each node, so the same tick would fire more than once")
    if not croniter.is_valid(expr):
        raise ValueError("a valid cron expression")
    try:
        croniter(expr, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except Exception:        # croniter's CroniterBadDateError, or anything its search raises
        raise ValueError("a cron expression that ever fires") from None
    return " ".join(expr.split())


class Cron:
    """A cron expression on the wall clock of `tz` (see the module docstring for DST)."""

    def __init__(self, expr: str, tz: dt.tzinfo):
        self.expr, self.tz = expr, tz

    def _iter(self, naive: dt.datetime):
        from croniter import croniter
        return croniter(self.expr, naive)

    def instant(self, naive: dt.datetime) -> int:
        """The epoch ms a wall-clock time stands for: its first occurrence, or for a
        time in a gap, the moment of the change. Non-decreasing in `naive`."""
        first = naive.replace(tzinfo=self.tz, fold=0)
        back = first.astimezone(UTC).astimezone(self.tz).replace(tzinfo=None)
        if back == naive:
            return _ms(first)
        # In a gap: fold=0 maps with the offset before the change (later instant),
        # fold=1 with the one after (earlier); the change lies between them.
        lo, hi = sorted((_ms(first), _ms(naive.replace(tzinfo=self.tz, fold=1))))
        while hi - lo > 1000:
            mid = (lo + hi) // 2
            if self._offset(mid) == self._offset(lo):
                lo = mid
            else:
                hi = mid
        return hi - hi % 1000

    def _offset(self, ms: int):
        return dt.datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz).utcoffset()

    def _wall(self, ms: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz).replace(tzinfo=None)

    def _margin(self, t_ms: int) -> dt.timedelta:
        """How far wall-clock times near t_ms may map out of order with it: the
        daylight-saving shift within a day of it (none: a minute, cron's step)."""
        shift = abs(self._offset(t_ms - DAY_MS) - self._offset(t_ms + DAY_MS))
        return shift + dt.timedelta(minutes=1)

    def next_after(self, t_ms: int) -> int:
        """The first tick strictly after t_ms."""
        it = self._iter(self._wall(t_ms) - self._margin(t_ms))
        while True:
            tick = self.instant(it.get_next(dt.datetime))
            if tick > t_ms:
                return tick

    def latest(self, now_ms: int) -> int:
        """The last tick at or before now_ms."""
        it = self._iter(self._wall(now_ms) + self._margin(now_ms))
        while True:
            tick = self.instant(it.get_prev(dt.datetime))
            if tick <= now_ms:
                return tick

    def count_between(self, after_ms: int, before_ms: int, cap: int) -> int:
        """Ticks strictly between the two, counting at most `cap`."""
        n, last = 0, after_ms
        it = self._iter(self._wall(after_ms) - self._margin(after_ms))
        while n < cap:
            tick = self.instant(it.get_next(dt.datetime))
            if tick >= before_ms:
                break
            if tick > last:          # ticks that fall together (a DST gap) count once
                n, last = n + 1, tick
        return n


def _ms(aware: dt.datetime) -> int:
    return int(round(aware.timestamp() * 1000))


def finite_positive(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0


# -- validation of the `schedules:` mapping (schema.py's checker reports) ------------

FIELDS = ("task", "cron", "every", "timezone", "queue", "args", "kwargs", "priority", "misfire_grace")


def parse_schedules(raw, check, queues, max_payload: int, task_re, name_ok, encode) -> dict:
    """{name: ScheduleConfig}. `check` is schema.py's _Checker (its mapping, error and
    expected build one-line ConfigErrors naming the key); `encode` is the envelope's
    encoder, so arguments are refused here rather than at every tick."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise check.expected("schedules", "a mapping of schedule names to {task, cron or every, ...}", raw)
    out = {}
    for name, settings in raw.items():
        path = f"schedules.{name}" if isinstance(name, str) and name.isprintable() and len(name) <= 80 \
            else "schedules"
        if not name_ok(name):
            raise check.expected(path, "a schedule name of letters, digits, '_', '.' and '-'", name)
        out[name] = _one(name, check.mapping(settings, path, FIELDS), path, check, queues, max_payload,
                         task_re, encode)
    return out


def _one(name, s: dict, path, check, queues, max_payload, task_re, encode) -> ScheduleConfig:
    task = s.get("task")
    if not (isinstance(task, str) and task_re.fullmatch(task)):
        raise check.expected(f"{path}.task", "a 'module:function' name", task)
    if ("cron" in s) == ("every" in s):
        raise check.error(path, "give exactly one of cron or every")
    kw = {"name": name, "task": task}
    if "cron" in s:
        try:
            kw["cron"] = check_cron(s["cron"])
        except ValueError as exc:
            raise check.expected(f"{path}.cron", str(exc), s["cron"]) from None
    else:
        every = s["every"]
        if not finite_positive(every) or not MIN_EVERY <= round(float(every), 3) <= MAX_EVERY:
            raise check.expected(f"{path}.every", f"a number of seconds from {MIN_EVERY:g} to {MAX_EVERY} "
                                 "(ten years)", every)
        kw["every"] = round(float(every), 3)
    if "timezone" in s:
        if "every" in s:
            raise check.error(f"{path}.timezone", "applies to cron only (every counts seconds since the epoch)")
        try:
            kw["timezone"] = check_zone(s["timezone"])
        except ValueError:
            raise check.expected(f"{path}.timezone", "a time zone name such as Europe/Berlin", s["timezone"]) \
                from None
    if "queue" in s:
        if s["queue"] not in queues:
            raise check.expected(f"{path}.queue", "a queue of this service (" + ", ".join(queues) + ")", s["queue"])
        kw["queue"] = s["queue"]
    kw.update(_payload(s, path, check, task, max_payload, encode))
    if "misfire_grace" in s:
        grace = s["misfire_grace"]
        if not finite_positive(grace) or round(float(grace), 3) < 1:
            raise check.expected(f"{path}.misfire_grace", "a number of seconds >= 1", grace)
        kw["misfire_grace"] = round(float(grace), 3)
    return ScheduleConfig(**kw)


def _payload(s, path, check, task, max_payload, encode) -> dict:
    args, kwargs, priority = s.get("args") or [], s.get("kwargs") or {}, s.get("priority", 0)
    if not isinstance(args, list):
        raise check.expected(f"{path}.args", "a list", args)
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise check.expected(f"{path}.kwargs", "a mapping with string keys", kwargs)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise check.expected(f"{path}.priority", "an integer from 0 to 9", priority)
    try:
        encode(task, args, kwargs, priority=priority, max_payload=max_payload)
    except ValueError as exc:           # PayloadError: not JSON, too deep, too large
        raise check.error(path, str(exc)) from None
    return {"args": tuple(args), "kwargs": dict(kwargs), "priority": priority}
