"""The value checkers of the configuration (schema.py's tables): each returns the
clean value or raises Bad, whose `expected` says what the value should have been;
each also has an `expected` attribute stating its limits, for the reference the
docs build from the tables."""
from __future__ import annotations

import math
import re

from .address import HOST_PORT, split_host_port
from .limits import BadRate, parse_rate

HOOK_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
WHOLE = object()


class Bad(Exception):
    """What a value should have been. For a list, `where` is the index of the bad
    item and `value` that item, so the message points at it."""

    def __init__(self, expected: str, where: str = "", value=WHOLE):
        super().__init__(expected)
        self.expected, self.where, self.value = expected, where, value


def _stating(expected: str, check):
    check.expected = expected
    return check


def integer(minimum: int, maximum: int | None = None):
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"

    def check(v):
        # bool is an int subclass, and `workers: yes` is a typo, not a 1.
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum or (maximum is not None and v > maximum):
            raise Bad(expected)
        return v
    return _stating(expected, check)


def seconds(minimum: float, above: bool = False):
    expected = f"a number of seconds {'>' if above else '>='} {minimum:g}"

    def check(v):
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        # Time is kept to the millisecond (broker scores are in ms), so round
        # before checking: 0.0004 is 0, which `> 0` must refuse.
        v = round(float(v), 3) if ok else v
        if not ok or v < minimum or (above and v == minimum):
            raise Bad(expected)
        return v
    return _stating(expected, check)


def choice(*options: str):
    expected = "one of " + ", ".join(options)

    def check(v):
        if not isinstance(v, str) or v.lower() not in options:
            raise Bad(expected)
        return v.lower()
    return _stating(expected, check)


def boolean(v):
    if not isinstance(v, bool):
        raise Bad(boolean.expected)
    return v


def hook(v):
    # null is a value here: a queue's `on_failure: null` switches off a default hook.
    if v is not None and not (isinstance(v, str) and HOOK_RE.fullmatch(v)):
        raise Bad(hook.expected)
    return v


def optional_text(v):
    if v is not None and not (isinstance(v, str) and v.strip()):
        raise Bad(optional_text.expected)
    return v


boolean.expected = "true or false"
hook.expected = "a 'module:function' name or null"
optional_text.expected = "a non-empty string or null"


def strings(one: str, many: str, valid, at_least_one: bool = False):
    """A list of strings, or one string standing for a list of one."""
    expected = f"{'one or more' if at_least_one else 'a list of'} {many}"

    def check(v):
        items = [] if v is None else [v] if isinstance(v, str) else v
        if not isinstance(items, list) or (at_least_one and not items):
            raise Bad(expected)
        for i, item in enumerate(items):
            if not (isinstance(item, str) and valid(item)):
                raise Bad(one, where=f"[{i}]", value=item)
        return tuple(items)
    return _stating(expected, check)


def listen(allow_unix: bool):
    """HOST:PORT (an IPv6 host in brackets), or, if allowed, "unix"."""
    expected = HOST_PORT + (', or "unix"' if allow_unix else "")

    def check(v):
        if allow_unix and v in ("unix", None):      # metrics: None is off
            return v
        try:
            split_host_port(v)
        except ValueError:
            raise Bad(expected) from None
        return v
    return _stating(expected, check)


def rate(v):
    """A rate limit's text ("20/s"), checked by the one parser (core/limits.py); null: none."""
    if v is None:
        return None
    try:
        parse_rate(v)
    except BadRate as exc:
        raise Bad(f"{exc}; or null") from None
    return v.strip()


rate.expected = 'a rate such as "20/s", "600/m", "5/10s", or null'
