"""The configuration's shape: frozen dataclasses, and the validation of a parsed
YAML mapping into them (config.py reads the file).

Validation is strict and friendly: every problem raises ConfigError with one
line naming the file, the key path and what was expected, e.g.
`orders.yaml: queues.emails.workers: expected an integer >= 1, got 'four'`.
A mistake caught here costs a failed `systemctl start`; one caught later costs
lost or stuck jobs.
"""
from __future__ import annotations

import difflib
import math
import re
import reprlib
from dataclasses import dataclass, field

from . import envelope, redis_url
from .schedules import ScheduleConfig, parse_schedules
from .names import INLINE_SCHEME, NAME_CHARS, is_name, is_queue_name, queue_rule, redact

BROKER_SCHEMES = (*redis_url.SCHEMES, "sqlite", INLINE_SCHEME)
HOOK_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
MAX_CONCURRENCY = 1000     # each slot is a scoreboard record and, for plain tasks, a thread
MODULE_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class ConfigError(Exception):
    """str(e) is one line: '<file name>: <key.path>: <what is expected>, got <repr>'."""


@dataclass(frozen=True)
class QueueConfig:
    name: str
    workers: int = 3                    # >= 1
    mode: str = "grab"                  # "grab" | "dispatch"
    timeout: float = 120.0              # seconds > 0, a job past it is killed
    retries: int = 3                    # >= 0; a job may run retries + 1 times
    retry_delay: float = 3.0            # seconds >= 0, to the millisecond
    backoff: str = "fixed"              # "fixed" | "exponential"
    max_retry_delay: float = 3600.0     # cap for exponential backoff, >= retry_delay
    retry_on_timeout: bool = False
    memory_limit: int = 0               # MB resident, 0 = none
    max_jobs: int = 0                   # recycle a worker after N jobs, 0 = never
    prefetch: int = 16                  # grab mode: most jobs one reserve may take (1 = one at a time)
    concurrency: int = 1                # most jobs one worker runs at once (async tasks, or threads), 1..1000
    result_ttl: int = 300               # seconds done jobs stay visible, 0 = not kept
    on_failure: str | None = None       # "module:function" hooks
    before_job: str | None = None
    on_worker_start: str | None = None  # runs after the service's own one
    on_worker_stop: str | None = None   # runs before the service's own one, as the worker exits


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"                 # debug | info | warning | error
    format: str = "json"                # json | text
    file: str | None = None             # size-rotated file, in addition to stderr
    max_bytes: int = 100 * 1024 * 1024
    backups: int = 5


@dataclass(frozen=True)
class MetricsConfig:
    # "HOST:PORT" for Prometheus to scrape, or "unix": metrics.sock in the service's
    # runtime directory (for `mpqctl metrics` on a host that opens no port). None: off.
    listen: str | None = None


@dataclass(frozen=True)
class WebConfig:
    listen: str = "127.0.0.1:9809"       # beyond loopback only with token_file
    token_file: str | None = None        # a file holding the access token (e.g. a systemd credential)
    read_only: bool = False              # no retry, delete or purge


@dataclass(frozen=True)
class FrameworkConfig:
    """The web framework each worker boots before importing the tasks (contrib/)."""
    kind: str                            # "django" | "flask"
    target: str | None = None            # django: a settings module (None: $DJANGO_SETTINGS_MODULE);
                                         # flask: "module:factory" or "module:app"


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    broker: str
    path: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    on_worker_start: str | None = None
    on_worker_stop: str | None = None
    framework: FrameworkConfig | None = None    # Django or Flask, booted in each worker
    log: LogConfig = LogConfig()
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    shutdown_timeout: float = 30.0
    max_payload: int = 1048576
    lease_grace: float = 30.0
    broker_password_file: str | None = None   # as written in the YAML; its content is in `broker`
    metrics: MetricsConfig = MetricsConfig()
    web: WebConfig = WebConfig()
    source: str | None = None
    schedules: dict[str, ScheduleConfig] = field(default_factory=dict)   # core/schedules.py


# -- value checkers: each returns the clean value or raises _Bad ------------

_WHOLE = object()


class _Bad(Exception):
    """What a value should have been. For a list, `where` is the index of the bad
    item and `value` that item, so the message points at it."""

    def __init__(self, expected: str, where: str = "", value=_WHOLE):
        super().__init__(expected)
        self.expected, self.where, self.value = expected, where, value


def _integer(minimum: int, maximum: int | None = None):
    def check(v):
        # bool is an int subclass, and `workers: yes` is a typo, not a 1.
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum or (maximum is not None and v > maximum):
            raise _Bad(f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}")
        return v
    return check


def _seconds(minimum: float, above: bool = False):
    def check(v):
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        # Time is kept to the millisecond (broker scores are in ms), so round
        # before checking: 0.0004 is 0, which `> 0` must refuse.
        v = round(float(v), 3) if ok else v
        if not ok or v < minimum or (above and v == minimum):
            raise _Bad(f"a number of seconds {'>' if above else '>='} {minimum:g}")
        return v
    return check


def _choice(*options: str):
    def check(v):
        if not isinstance(v, str) or v.lower() not in options:
            raise _Bad("one of " + ", ".join(options))
        return v.lower()
    return check


def _boolean(v):
    if not isinstance(v, bool):
        raise _Bad("true or false")
    return v


def _hook(v):
    # null is a value here: a queue's `on_failure: null` switches off a default hook.
    if v is not None and not (isinstance(v, str) and HOOK_RE.fullmatch(v)):
        raise _Bad("a 'module:function' name or null")
    return v


def _optional_text(v):
    if v is not None and not (isinstance(v, str) and v.strip()):
        raise _Bad("a non-empty string or null")
    return v


def _strings(one: str, many: str, valid, at_least_one: bool = False):
    """A list of strings, or one string standing for a list of one."""
    def check(v):
        items = [] if v is None else [v] if isinstance(v, str) else v
        if not isinstance(items, list) or (at_least_one and not items):
            raise _Bad(f"{'one or more' if at_least_one else 'a list of'} {many}")
        for i, item in enumerate(items):
            if not (isinstance(item, str) and valid(item)):
                raise _Bad(one, where=f"[{i}]", value=item)
        return tuple(items)
    return check


def _broker(v):
    schemes = ", ".join(BROKER_SCHEMES[:-1]) + " or " + BROKER_SCHEMES[-1]
    expected = f"a URL with scheme {schemes}"
    if not isinstance(v, str):
        raise _Bad(expected)
    parts = redis_url.split_url(v)
    if parts.scheme not in BROKER_SCHEMES:
        raise _Bad(expected)
    if parts.scheme == INLINE_SCHEME:
        if parts.authority or parts.path.strip("/") or parts.query:
            raise _Bad("sync:// with nothing after it")
        return v
    if parts.scheme == "sqlite":
        if parts.query not in ("", "synchronous=normal", "synchronous=full"):
            raise _Bad("an sqlite: URL whose only option is ?synchronous=normal or ?synchronous=full")
        if not (parts.authority or parts.path):
            raise _Bad("a URL with a host or a path after 'sqlite:'")
        return v
    try:
        redis_url.parse(v)
    except ValueError as exc:
        raise _Bad(str(exc)) from None
    return v


QUEUE_FIELDS = {
    "workers": _integer(1), "mode": _choice("grab", "dispatch"), "timeout": _seconds(0, above=True),
    "retries": _integer(0), "retry_delay": _seconds(0), "backoff": _choice("fixed", "exponential"),
    "max_retry_delay": _seconds(0), "retry_on_timeout": _boolean, "memory_limit": _integer(0),
    "max_jobs": _integer(0), "prefetch": _integer(1), "result_ttl": _integer(0),
    "concurrency": _integer(1, MAX_CONCURRENCY),
    "on_failure": _hook, "before_job": _hook, "on_worker_start": _hook, "on_worker_stop": _hook,
}
LOG_FIELDS = {
    "level": _choice("debug", "info", "warning", "error"), "format": _choice("json", "text"),
    "file": _optional_text,
    # Under 1 KiB is surely a unit mistake (MB meant); with 0 backups the
    # rotating handler never rotates and the file grows without bound.
    "max_bytes": _integer(1024), "backups": _integer(1),
}
def _listen(allow_unix: bool):
    """HOST:PORT (an IPv6 host in brackets), or, if allowed, "unix"."""
    def check(v):
        if allow_unix and v in ("unix", None):      # metrics: None is off
            return v
        host, sep, port = v.rpartition(":") if isinstance(v, str) else ("", "", "")
        if not (sep and host.strip("[]") and port.isdigit() and 0 < int(port) < 65536) or any(c.isspace() for c in v):
            raise _Bad("HOST:PORT such as 127.0.0.1:9808" + (', or "unix"' if allow_unix else ""))
        return v
    return check


METRICS_FIELDS = {"listen": _listen(allow_unix=True)}
WEB_FIELDS = {"listen": _listen(allow_unix=False), "token_file": _optional_text, "read_only": _boolean}
SERVICE_FIELDS = {
    "broker": _broker,
    "path": _strings("a directory", "directories", lambda s: bool(s.strip())),
    "imports": _strings("a dotted module name", "module names", MODULE_RE.fullmatch, at_least_one=True),
    "on_worker_start": _hook, "on_worker_stop": _hook, "shutdown_timeout": _seconds(0, above=True),
    "max_payload": _integer(1024), "lease_grace": _seconds(0, above=True),
    "broker_password_file": _optional_text,
}
TOP_KEYS = ("name", "broker", "broker_password_file", "path", "imports", "on_worker_start", "log", "metrics", "web",
            "defaults", "queues", "shutdown_timeout", "max_payload", "lease_grace")
TOP_KEYS += ("schedules",)        # core/schedules.py checks its contents
TOP_KEYS += ("framework", "on_worker_stop")
FRAMEWORKS = {"django": "a settings module such as myproject.settings, or null for $DJANGO_SETTINGS_MODULE",
              "flask": "an app factory or app as 'module:name', such as 'myapp:create_app'"}
# What each required key holds, for the "missing" message.
REQUIRED = {"broker": "a broker URL such as redis://127.0.0.1:6379/0",
            "imports": "one or more module names defining the tasks",
            "queues": "a mapping of one or more queue names to their settings"}


def _bounded_repr() -> reprlib.Repr:
    """repr whose work and length are bounded whatever the value: a YAML alias
    bomb (a list of lists of ... sharing nodes) would otherwise be expanded in
    full before being cut, minutes and gigabytes for ten levels."""
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 3, 200, 200, 60
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 12
    return r


_REPR = _bounded_repr()


def _show(value) -> str:
    """repr, kept to one short line (a repr never contains a raw newline)."""
    if isinstance(value, str) and "://" in value:
        value = redact(value)
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key(path: str, key) -> str:
    text = key if isinstance(key, str) and key.isprintable() and len(key) <= 80 else _show(key)
    return f"{path}.{text}" if path else text


class _Checker:
    """Turns _Bad and structural problems into ConfigErrors naming file and key path."""

    def __init__(self, source_name: str):
        self.source = source_name

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    def expected(self, path: str, expected: str, value) -> ConfigError:
        return self.error(path, f"expected {expected}, got {_show(value)}")

    def mapping(self, value, path: str, allowed) -> dict:
        """A mapping (null counts as empty) whose keys are all in `allowed`."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.expected(path, "a mapping", value)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), 1)
                advice = f"did you mean {close[0]!r}?" if close else "allowed keys: " + ", ".join(allowed)
                raise self.error(_key(path, key), f"unknown key; {advice}")
        return value

    def fields(self, raw: dict, checkers: dict, path: str) -> dict:
        """Check the keys of `raw` that are present; absent ones keep their defaults."""
        out = {}
        for key, check in checkers.items():
            if key in raw:
                try:
                    out[key] = check(raw[key])
                except _Bad as bad:
                    value = raw[key] if bad.value is _WHOLE else bad.value
                    raise self.expected(_key(path, key) + bad.where, bad.expected, value) from None
        return out

    def top_level(self, data) -> dict:
        if data is None:
            raise self.error("", "the file is empty; expected a mapping with at least broker, imports and queues")
        if not isinstance(data, dict):
            raise self.expected("", "a mapping of settings at the top level", data)
        self.mapping(data, "", TOP_KEYS)
        for key, expected in REQUIRED.items():
            if key not in data:
                raise self.error(key, f"required key is missing; expected {expected}")
        return data

    def service_name(self, value, from_file_name: bool) -> str:
        if is_name(value):
            return value
        hint = " (the default is the file name without .yaml; set name:)" if from_file_name else ""
        raise self.expected("name", f"a name of {NAME_CHARS}{hint}", value)

    def queue(self, name, settings, defaults: dict) -> QueueConfig:
        path = _key("queues", name)
        if not is_queue_name(name):
            raise self.expected(path, queue_rule(), name)
        own = self.fields(self.mapping(settings, path, QUEUE_FIELDS), QUEUE_FIELDS, path)
        q = QueueConfig(name=name, **{**defaults, **own})
        if q.max_retry_delay < q.retry_delay:
            raise self.expected(f"{path}.max_retry_delay",
                                f"a number of seconds >= retry_delay ({q.retry_delay:g})", q.max_retry_delay)
        return q

    def framework(self, raw) -> FrameworkConfig | None:
        """`framework: {django: SETTINGS}` or `framework: {flask: "module:name"}`."""
        if raw is None:
            return None
        expected = "a mapping with one key, django or flask, such as {django: myproject.settings}"
        if not isinstance(raw, dict) or len(raw) != 1:
            raise self.expected("framework", expected, raw)
        self.mapping(raw, "framework", FRAMEWORKS)
        (kind, target), = raw.items()
        if kind == "django":
            ok = target is None or (isinstance(target, str) and MODULE_RE.fullmatch(target))
        else:
            ok = isinstance(target, str) and HOOK_RE.fullmatch(target)
        if not ok:
            raise self.expected(f"framework.{kind}", FRAMEWORKS[kind], target)
        return FrameworkConfig(kind, target)

    def queues(self, raw, defaults: dict) -> dict[str, QueueConfig]:
        if not isinstance(raw, dict) or not raw:
            raise self.expected("queues", "a mapping of one or more queue names to their settings", raw)
        return {name: self.queue(name, settings, defaults) for name, settings in raw.items()}


def parse_config(data, source_name: str, default_name: str) -> ServiceConfig:
    """Validate an already-parsed mapping; `source_name` prefixes every error."""
    check = _Checker(source_name)
    top = check.top_level(data)
    name = check.service_name(top.get("name", default_name), "name" not in top)
    defaults = check.fields(check.mapping(top.get("defaults"), "defaults", QUEUE_FIELDS), QUEUE_FIELDS, "defaults")
    log = LogConfig(**check.fields(check.mapping(top.get("log"), "log", LOG_FIELDS), LOG_FIELDS, "log"))
    metrics = MetricsConfig(**check.fields(check.mapping(top.get("metrics"), "metrics", METRICS_FIELDS),
                                           METRICS_FIELDS, "metrics"))
    web = WebConfig(**check.fields(check.mapping(top.get("web"), "web", WEB_FIELDS), WEB_FIELDS, "web"))
    settings = check.fields(top, SERVICE_FIELDS, "")
    settings["framework"] = check.framework(top.get("framework"))
    queues = check.queues(top["queues"], defaults)
    schedules = parse_schedules(top.get("schedules"), check, queues, settings.get("max_payload", 1048576),
                                HOOK_RE, is_name, envelope.encode)
    return ServiceConfig(name=name, log=log, metrics=metrics, web=web, queues=queues, schedules=schedules,
                         **settings)
