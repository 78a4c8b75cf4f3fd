"""The Lua scripts as sent to Redis, and which keys each one is given.

Each script in lua/ opens with a header line naming the keys it uses, in the
order it gets them (`-- KEYS: held leases ready:* ...`; "ready:*" is the ten
priority lists). script_source() makes the script Redis runs: only the helpers of
_keys.lua the script calls (and those they call), then its body, with each key's
name written as its position (HELD -> 1, LEASES -> 2; NKEYS: their number). So a
call carries only its own keys and Redis runs only the helpers it needs, while
every helper is written once, in _keys.lua, whose header documents every key.
A script that uses a key it did not declare, or declares one it never uses, is
refused when it is built (tests/unit load every script).
"""
from __future__ import annotations

import functools
import os
import re
from importlib import resources

from .records import PushItem

# The queue's keys by name (under "mpq:{<queue>}:"); ready:* stands for ready:0..9.
KEY_NAMES = ("ready:*", "pmax", "sched", "held", "leases", "stats", "failed", "errors", "wake", "idle",
             "failed_at", "watch", "cancels", "ids", "paused", "where", "dead", "ticks", "history", "rate")
_CONSTANTS = {name: name.removesuffix(":*").upper() for name in KEY_NAMES}
_HEADER = re.compile(r"^-- KEYS:(.*)$", re.MULTILINE)
_UNIT = re.compile(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_]*)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONSTANT_WORD = re.compile(r"\b(?:%s|NKEYS)\b" % "|".join(sorted(_CONSTANTS.values(), key=len, reverse=True)))


def _lua(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


def _code_words(text: str) -> set[str]:
    """The identifiers of Lua code, its comments left out (no script puts '--' in a string)."""
    return set(_WORD.findall("\n".join(line.split("--", 1)[0] for line in text.splitlines())))


@functools.lru_cache(maxsize=None)
def _helpers() -> tuple[tuple[str, str], ...]:
    """_keys.lua's top-level definitions in file order: (name, text with the comment block
    right above it). The data model's header, apart, is documentation only and is not sent."""
    units, pending, current = [], [], None
    for line in _lua("_keys").splitlines(keepends=True):
        match = _UNIT.match(line)
        if match:
            comment = pending[max((i for i, x in enumerate(pending) if not x.strip()), default=-1) + 1:]
            current = [match.group(1), "".join(comment) + line]     # its own comment block, no more
            units.append(current)
            pending = []
        elif current is not None and (line.startswith((" ", "end")) and not line.startswith("--")):
            current[1] += line
        else:
            pending.append(line)         # a comment or blank line: it belongs to the next definition
    return tuple((name, text) for name, text in units)


@functools.lru_cache(maxsize=None)
def script_keys(name: str) -> tuple[str, ...]:
    """The key names script `name` declares in its header, in order."""
    match = _HEADER.search(_lua(name))
    if match is None:
        raise ValueError(f"lua/{name}.lua has no '-- KEYS:' header")
    declared = tuple(match.group(1).split("+", 1)[0].split())     # after '+': extra keys, documented only
    unknown = [k for k in declared if k not in _CONSTANTS]
    if unknown:
        raise ValueError(f"lua/{name}.lua declares unknown keys {unknown}")
    return declared


@functools.lru_cache(maxsize=None)
def key_count(name: str) -> int:
    return sum(10 if k == "ready:*" else 1 for k in script_keys(name))


@functools.lru_cache(maxsize=None)
def script_source(name: str, sharded: bool = False) -> str:
    """Script `name` as sent to Redis. `sharded`: wake-ups and hand-offs over SPUBLISH
    (a Cluster), else PUBLISH."""
    body, keys = _lua(name), script_keys(name)
    helpers = _helpers()
    needed, todo = set(), _code_words(body)
    while todo:                      # the helpers the body calls, and the ones those call
        word = todo.pop()
        for helper, text in helpers:
            if helper == word and helper not in needed:
                needed.add(helper)
                todo |= _code_words(text)
    used = "".join(text for helper, text in helpers if helper in needed)
    _check_keys(name, keys, _code_words(used + body))
    if sharded:
        used = used.replace("local PUBLISH = 'PUBLISH'", "local PUBLISH = 'SPUBLISH'", 1)
    return _numbered(used + body, keys)


def _numbered(code: str, keys: tuple[str, ...]) -> str:
    """`code` with each key's name (HELD, READY, NKEYS...) written as its position:
    as locals, every helper that read one captured it as an upvalue, and making
    those closures cost each call ~10% of a push's time in Redis."""
    positions, at = {}, 1
    for key in keys:
        positions[_CONSTANTS[key]] = str(at)
        at += 10 if key == "ready:*" else 1
    positions["NKEYS"] = str(at - 1)
    return _CONSTANT_WORD.sub(lambda m: positions.get(m.group(0), m.group(0)), code)


def _check_keys(name: str, declared: tuple[str, ...], words: set[str]) -> None:
    used = {k for k, const in _CONSTANTS.items() if const in words}
    if used != set(declared):
        raise ValueError(f"lua/{name}.lua: its KEYS header {sorted(declared)} does not match the keys "
                         f"it and its helpers use, {sorted(used)}")


def push_args(items: list[PushItem]) -> list:
    """push.lua's ARGV for the items."""
    args = [os.urandom(6).hex() + ".", len(items)]
    for item in items:
        args += [item.delay_ms(), item.priority, "1" if item.caller_id else "0", item.envelope]
    return args


def caller_done_keys(keys, items: list[PushItem]) -> list[str]:
    """push.lua's extra KEYS: the done keys of the items' caller-chosen ids, in order."""
    return [keys.done(item.caller_id) for item in items if item.caller_id]
