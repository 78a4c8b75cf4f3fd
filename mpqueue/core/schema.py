"""The configuration's shape: one table per section naming each YAML key once (Key:
its type, default, check and limits, a line of documentation, whether a reload
applies it), the frozen records derived from those tables, and the validation of
a parsed YAML mapping into them (config.py reads the file; checks.py checks values).

Validation is strict and friendly: every problem raises ConfigError with one
line naming the file, the key path and what was expected, e.g.
`orders.yaml: queues.emails.workers: expected an integer >= 1, got 'four'`.
A mistake caught here costs a failed `systemctl start`; one caught later costs
lost or stuck jobs.
"""
from __future__ import annotations

import difflib
import re
import reprlib
from dataclasses import MISSING, dataclass, field, make_dataclass

from . import envelope, redis_url
from . import checks
from .schedules import ScheduleConfig, parse_schedules
from .names import INLINE_SCHEME, NAME_CHARS, is_name, is_queue_name, queue_rule, redact

BROKER_SCHEMES = (*redis_url.SCHEMES, "sqlite", INLINE_SCHEME)
MAX_CONCURRENCY = 1000     # each slot is a scoreboard record and, for plain tasks, a thread
MODULE_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
RELOAD, RESTART = "reload", "restart"      # when a changed key applies (Key.reload)


class ConfigError(Exception):
    """str(e) is one line: '<file name>: <key.path>: <what is expected>, got <repr>'."""


def _broker(v):
    """A broker URL of a scheme mpqueue knows (BROKER_SCHEMES), well formed for it."""
    # (kept here, not in checks.py: tests widen BROKER_SCHEMES of this module)
    schemes = ", ".join(BROKER_SCHEMES[:-1]) + " or " + BROKER_SCHEMES[-1]
    expected = f"a URL with scheme {schemes}"
    if not isinstance(v, str):
        raise checks.Bad(expected)
    parts = redis_url.split_url(v)
    if parts.scheme not in BROKER_SCHEMES:
        raise checks.Bad(expected)
    if parts.scheme == INLINE_SCHEME:
        if parts.authority or parts.path.strip("/") or parts.query:
            raise checks.Bad("sync:// with nothing after it")
        return v
    if parts.scheme == "sqlite":
        if parts.query not in ("", "synchronous=normal", "synchronous=full"):
            raise checks.Bad("an sqlite: URL whose only option is ?synchronous=normal or ?synchronous=full")
        if not (parts.authority or parts.path):
            raise checks.Bad("a URL with a host or a path after 'sqlite:'")
        return v
    try:
        redis_url.parse(v)
    except ValueError as exc:
        raise checks.Bad(str(exc)) from None
    return v


_broker.expected = "a URL with scheme " + ", ".join(BROKER_SCHEMES)


@dataclass(frozen=True)
class Key:
    """One YAML key, the one place it is named: the type and default of its config
    field, the check of its value (whose `expected` states the limits), one line for
    the reference (docs), and when a change applies: RELOAD (a reload takes it) or
    RESTART (a reload refuses it: supervisor/reload.py). `required`: what a required
    key holds, for the "missing" message. `section`: a mapping checked by its own
    table or parser, not by `check`. `field`: False for a key with no config field."""
    type: object
    default: object
    check: object
    doc: str
    reload: str = RELOAD
    required: str = ""
    section: bool = False
    field: bool = True


def _hook_key(doc: str) -> Key:
    return Key(str | None, None, checks.hook, doc)


def _record(name: str, keys: dict, first=(), last=()):
    """The frozen config record of a table: a field per key, with the key's type and default."""
    fields = list(first)
    for key_name, key in keys.items():
        if not key.field:
            continue
        if key.default is MISSING:
            fields.append((key_name, key.type))
        elif isinstance(key.default, dict):
            fields.append((key_name, key.type, field(default_factory=dict)))
        else:
            fields.append((key_name, key.type, field(default=key.default)))
    cls = make_dataclass(name, fields + list(last), frozen=True)
    cls.__module__ = __name__
    return cls


QUEUE_KEYS = {
    "workers": Key(int, 3, checks.integer(1), "worker processes serving the queue"),
    "mode": Key(str, "grab", checks.choice("grab", "dispatch"),
                "grab: each worker reserves its own jobs; dispatch: the supervisor hands them out"),
    "timeout": Key(float, 120.0, checks.seconds(0, above=True), "seconds a job may run; past it, it is killed"),
    "retries": Key(int, 3, checks.integer(0), "a job may run retries + 1 times"),
    "retry_delay": Key(float, 3.0, checks.seconds(0), "seconds before a retry, to the millisecond"),
    "backoff": Key(str, "fixed", checks.choice("fixed", "exponential"), "how the retry delay grows"),
    "max_retry_delay": Key(float, 3600.0, checks.seconds(0), "cap of exponential backoff, >= retry_delay"),
    "retry_on_timeout": Key(bool, False, checks.boolean, "whether a job that timed out is retried"),
    "memory_limit": Key(int, 0, checks.integer(0), "MB resident that recycles a worker, 0 = none"),
    "max_jobs": Key(int, 0, checks.integer(0), "recycle a worker after N jobs, 0 = never"),
    "prefetch": Key(int, 64, checks.integer(1),
                    "most jobs a worker takes in hand at once, by reserve (grab) or ask (dispatch); 1 = one"),
    "rate": Key(str | None, None, checks.rate,
                "most jobs started per period across every node of the service (\"20/s\", \"600/m\"); "
                "null: no limit"),
    "rate_burst": Key(int, 1, checks.integer(1), "jobs a rate-limited queue may start at once after a quiet spell"),
    "result_ttl": Key(int, 300, checks.integer(0), "seconds done jobs stay visible, 0 = not kept"),
    "concurrency": Key(int, 1, checks.integer(1, MAX_CONCURRENCY),
                       "most jobs one worker runs at once (async tasks, or threads)"),
    "on_failure": _hook_key("'module:function' called with a job that failed for good; null: none"),
    "before_job": _hook_key("'module:function' run before each job"),
    "on_worker_start": _hook_key("'module:function' run in each worker after the service's own one"),
    "on_worker_stop": _hook_key("'module:function' run before the service's own one, as the worker exits"),
}
QueueConfig = _record("QueueConfig", QUEUE_KEYS, first=[("name", str)])
LOG_KEYS = {
    "level": Key(str, "info", checks.choice("debug", "info", "warning", "error"), "the least severe level logged"),
    "format": Key(str, "json", checks.choice("json", "text"), "one JSON object a line, or plain text"),
    "file": Key(str | None, None, checks.optional_text, "a size-rotated file, in addition to stderr"),
    # Under 1 KiB is surely a unit mistake (MB meant); with 0 backups the
    # rotating handler never rotates and the file grows without bound.
    "max_bytes": Key(int, 100 * 1024 * 1024, checks.integer(1024), "size at which the file rotates"),
    "backups": Key(int, 5, checks.integer(1), "rotated files kept"),
}
LogConfig = _record("LogConfig", LOG_KEYS)
METRICS_KEYS = {
    "listen": Key(str | None, None, checks.listen(allow_unix=True),
                  '"HOST:PORT" for Prometheus to scrape, or "unix": metrics.sock in the service\'s runtime '
                  "directory (for `mpqctl metrics` on a host that opens no port); null: off", RESTART),
}
MetricsConfig = _record("MetricsConfig", METRICS_KEYS)
WEB_KEYS = {
    "listen": Key(str, "127.0.0.1:9809", checks.listen(allow_unix=False),
                  "where `mpqueue web` listens; beyond loopback only with token_file"),
    "token_file": Key(str | None, None, checks.optional_text,
                      "a file holding the access token (e.g. a systemd credential)"),
    "read_only": Key(bool, False, checks.boolean, "no retry, delete or purge from the dashboard"),
}
WebConfig = _record("WebConfig", WEB_KEYS)


@dataclass(frozen=True)
class FrameworkConfig:
    """The web framework each worker boots before importing the tasks (contrib/)."""
    kind: str                            # "django" | "flask"
    target: str | None = None            # django: a settings module (None: $DJANGO_SETTINGS_MODULE);
                                         # flask: "module:factory" or "module:app"


SERVICE_KEYS = {
    "name": Key(str, MISSING, None, "the service's name; default: the file name without .yaml", RESTART),
    "broker": Key(str, MISSING, _broker, "the broker URL", RESTART,
                  required="a broker URL such as redis://127.0.0.1:6379/0"),
    "broker_password_file": Key(str | None, None, checks.optional_text, "a file holding the broker's password"),
    "path": Key(tuple[str, ...], (), checks.strings("a directory", "directories", lambda s: bool(s.strip())),
                "directories put on sys.path before the imports"),
    "imports": Key(tuple[str, ...], (), checks.strings("a dotted module name", "module names", MODULE_RE.fullmatch,
                                                 at_least_one=True), "the modules defining the tasks",
                   required="one or more module names defining the tasks"),
    "on_worker_start": _hook_key("'module:function' run in each worker as it starts"),
    "log": Key(LogConfig, LogConfig(), None, "logging: level, format, file (its keys below)", section=True),
    "metrics": Key(MetricsConfig, MetricsConfig(), None, "the Prometheus metrics endpoint (its keys below)", RESTART, section=True),
    "web": Key(WebConfig, WebConfig(), None, "the web dashboard (its keys below)", section=True),
    "defaults": Key(None, None, None, "settings every queue starts from (a queue's keys)", section=True, field=False),
    "queues": Key(dict, {}, None, "queue name -> its settings (a queue's keys)", section=True,
                  required="a mapping of one or more queue names to their settings"),
    "shutdown_timeout": Key(float, 30.0, checks.seconds(0, above=True), "seconds a stop waits for running jobs"),
    "max_payload": Key(int, 1048576, checks.integer(1024), "most bytes of a job's envelope"),
    "lease_grace": Key(float, 30.0, checks.seconds(0, above=True), "seconds a lease outlasts its job's timeout"),
    "schedules": Key(dict, {}, None, "name -> a job pushed on a schedule (a schedule's keys)", section=True),
    "framework": Key(FrameworkConfig | None, None, None, "a web framework booted in each worker: {django: SETTINGS} "
                     "or {flask: 'module:name'}", section=True),
    "on_worker_stop": _hook_key("'module:function' run in each worker as it exits"),
}
FRAMEWORKS = {"django": "a settings module such as myproject.settings, or null for $DJANGO_SETTINGS_MODULE",
              "flask": "an app factory or app as 'module:name', such as 'myapp:create_app'"}


# Derived from the tables above, never written out again.
QUEUE_FIELDS = {name: key.check for name, key in QUEUE_KEYS.items()}
LOG_FIELDS = {name: key.check for name, key in LOG_KEYS.items()}
METRICS_FIELDS = {name: key.check for name, key in METRICS_KEYS.items()}
WEB_FIELDS = {name: key.check for name, key in WEB_KEYS.items()}
SERVICE_FIELDS = {name: key.check for name, key in SERVICE_KEYS.items() if key.check is not None}
TOP_KEYS = tuple(SERVICE_KEYS)
REQUIRED = {name: key.required for name, key in SERVICE_KEYS.items() if key.required}
# `source`: the file read (config.py), not a YAML key
ServiceConfig = _record("ServiceConfig", SERVICE_KEYS, last=[("source", str | None, field(default=None))])


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
    """Turns checks.Bad and structural problems into ConfigErrors naming file and key path."""

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
                except checks.Bad as bad:
                    value = raw[key] if bad.value is checks.WHOLE else bad.value
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
            ok = isinstance(target, str) and checks.HOOK_RE.fullmatch(target)
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
                                checks.HOOK_RE, is_name, envelope.encode)
    return ServiceConfig(name=name, log=log, metrics=metrics, web=web, queues=queues, schedules=schedules,
                         **settings)
