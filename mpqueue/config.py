"""The service's YAML file -> frozen, validated dataclasses.

Validation is strict and friendly: every problem is one line naming the file,
the key path and what was expected, e.g.
`orders.yaml: queues.emails.workers: expected an integer >= 1, got 'four'`.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

BROKER_SCHEMES = ("redis", "rediss", "unix")
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
HOOK_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
MODULE_RE = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


class ConfigError(Exception):
    """One line: '<file>: <key.path>: <what is expected>, got <value>'."""


@dataclass(frozen=True)
class QueueConfig:
    name: str
    workers: int = 3
    mode: str = "grab"
    timeout: float = 120.0
    retries: int = 3
    retry_delay: float = 3.0
    backoff: str = "fixed"
    max_retry_delay: float = 3600.0
    retry_on_timeout: bool = False
    memory_limit: int = 128
    max_jobs: int = 0
    result_ttl: int = 300
    on_failure: str | None = None
    before_job: str | None = None
    on_worker_start: str | None = None


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "json"
    file: str | None = None
    max_bytes: int = 100 * 1024 * 1024
    backups: int = 5


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    broker: str
    path: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    on_worker_start: str | None = None
    log: LogConfig = LogConfig()
    queues: dict = field(default_factory=dict)
    shutdown_timeout: float = 30.0
    max_payload: int = 1048576
    lease_grace: float = 30.0
    source: str | None = None


# -- value checkers: each returns the clean value or raises _Bad(expected)
class _Bad(Exception):
    pass


def _int(minimum):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise _Bad(f"an integer >= {minimum}")
        return v
    return check


def _number(minimum, strict=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum or (strict and v == minimum):
            raise _Bad(f"a number {'>' if strict else '>='} {minimum:g}")
        return float(v)
    return check


def _choice(*options):
    def check(v):
        if not isinstance(v, str) or v.lower() not in options:
            raise _Bad("one of " + ", ".join(options))
        return v.lower()
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise _Bad("true or false")
    return v


def _hook(v):
    if v is None:
        return None
    if not isinstance(v, str) or not HOOK_RE.fullmatch(v):
        raise _Bad("a 'module:function' name")
    return v


def _str(v):
    if not isinstance(v, str) or not v:
        raise _Bad("a non-empty string")
    return v


def _opt_str(v):
    return None if v is None else _str(v)


def _list_of(pattern, what):
    def check(v):
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not all(isinstance(i, str) and pattern(i) for i in items):
            raise _Bad(f"a list of {what}")
        return tuple(items)
    return check


QUEUE_KEYS = {
    "workers": _int(1), "mode": _choice("grab", "dispatch"), "timeout": _number(0, strict=True),
    "retries": _int(0), "retry_delay": _number(0), "backoff": _choice("fixed", "exponential"),
    "max_retry_delay": _number(0), "retry_on_timeout": _bool, "memory_limit": _int(0), "max_jobs": _int(0),
    "result_ttl": _int(0), "on_failure": _hook, "before_job": _hook, "on_worker_start": _hook,
}
LOG_KEYS = {"level": _choice("debug", "info", "warning", "error"), "format": _choice("json", "text"),
            "file": _opt_str, "max_bytes": _int(1024), "backups": _int(0)}
TOP_KEYS = ("name", "broker", "path", "imports", "on_worker_start", "log", "defaults", "queues",
            "shutdown_timeout", "max_payload", "lease_grace")


class _Validator:
    def __init__(self, source_name: str):
        self.source = source_name

    def fail(self, path: str, expected: str, value) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: expected {expected}, got {_show(value)}")

    def mapping(self, value, path: str, allowed) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, "a mapping", value)
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, 1)
                where = f"{path}.{key}" if path else str(key)
                advice = f"did you mean {hint[0]!r}?" if hint else "allowed: " + ", ".join(allowed)
                raise ConfigError(f"{self.source}: {where}: unknown key; {advice}")
        return value

    def fields(self, raw: dict, checkers: dict, path: str) -> dict:
        out = {}
        for key, check in checkers.items():
            if key in raw:
                try:
                    out[key] = check(raw[key])
                except _Bad as bad:
                    raise self.fail(f"{path}.{key}" if path else key, str(bad), raw[key]) from None
        return out

    def queues(self, raw, defaults: dict) -> dict:
        if not isinstance(raw, dict) or not raw:
            raise self.fail("queues", "a mapping of at least one queue name to its settings", raw)
        out = {}
        for name, settings in raw.items():
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                raise self.fail("queues", "queue names of letters, digits, '_', '.', '-'", name)
            settings = self.mapping(settings, f"queues.{name}", list(QUEUE_KEYS))
            values = {**defaults, **self.fields(settings, QUEUE_KEYS, f"queues.{name}")}
            q = QueueConfig(name=name, **values)
            if q.max_retry_delay < q.retry_delay:
                raise self.fail(f"queues.{name}.max_retry_delay", f"a number >= retry_delay ({q.retry_delay:g})",
                                q.max_retry_delay)
            out[name] = q
        return out

    def broker(self, value) -> str:
        expected = f"a URL with scheme {', '.join(BROKER_SCHEMES[:-1])} or {BROKER_SCHEMES[-1]}"
        if not isinstance(value, str):
            raise self.fail("broker", expected, value)
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise self.fail("broker", expected, value) from None
        if parts.scheme not in BROKER_SCHEMES:
            raise self.fail("broker", expected, value)
        return value


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_config(data, source_name: str, default_name: str) -> ServiceConfig:
    v = _Validator(source_name)
    if not isinstance(data, dict):
        raise ConfigError(f"{source_name}: expected a mapping of settings at the top level, got {_show(data)}")
    data = v.mapping(data, "", TOP_KEYS)
    for key in ("broker", "imports", "queues"):
        if key not in data:
            raise ConfigError(f"{source_name}: {key}: required key is missing")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise v.fail("name", "a name of letters, digits, '_', '.', '-'", name)
    defaults_raw = v.mapping(data.get("defaults"), "defaults", list(QUEUE_KEYS))
    defaults = v.fields(defaults_raw, QUEUE_KEYS, "defaults")
    top = v.fields(data, {
        "path": _list_of(lambda s: bool(s), "directories"),
        "imports": _list_of(MODULE_RE.fullmatch, "module names"),
        "on_worker_start": _hook, "shutdown_timeout": _number(0, strict=True),
        "max_payload": _int(1024), "lease_grace": _number(0, strict=True)}, "")
    if not top.get("imports"):
        raise v.fail("imports", "a list of at least one module name", data.get("imports"))
    log_raw = v.mapping(data.get("log"), "log", list(LOG_KEYS))
    return ServiceConfig(name=name, broker=v.broker(data["broker"]), log=LogConfig(**v.fields(log_raw, LOG_KEYS, "log")),
                         queues=v.queues(data["queues"], defaults), **top)


def load_config(path) -> ServiceConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path.name}: invalid YAML: {where}{problem}") from None
    cfg = parse_config(data, path.name, path.stem)
    return dataclasses.replace(cfg, source=str(path.resolve()))


def config_dir() -> Path:
    return Path(os.environ.get("MPQUEUE_CONFIG_DIR", "/etc/mpqueue"))


def config_path_for(name: str) -> Path:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"service name: expected letters, digits, '_', '.', '-', got {_show(name)}")
    return config_dir() / f"{name}.yaml"
