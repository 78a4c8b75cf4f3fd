"""`mpqctl`: inspect and administer queues from the command line.

It talks to the broker only, never to a running service, so it works while the
service is down and from any host that can reach the broker. The JSON output
(`--json`, before or after the command) is a stable, documented contract; each
command's docstring gives its shape. Errors are never JSON: one line on stderr,
`mpqctl: <what is wrong>`, and a non-zero exit status.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import sys
import time
from functools import cached_property
from urllib.parse import urlsplit, urlunsplit

import click
import redis as redislib

from . import __version__
from . import job as jobmod
from .brokers import BrokerError, open_broker
from .client import Client
from .ctl_text import _failed_text, _job_text, _status_text

EX_FAILURE, EX_USAGE, EX_CONFIG = 1, 2, 78
DEFAULT_MAX_PAYLOAD = 1 << 20
COUNT_KEYS = ("ready", "scheduled", "running", "failed", "done_total", "failed_total")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# click >= 8.2 raises this for a bare `mpqctl`; its message is the whole help text.
_HELP_ERRORS = getattr(click.exceptions, "NoArgsIsHelpError", ())


class CtlError(click.ClickException):
    """A failure reported as one line, `mpqctl: <message>`, with its exit status."""

    def __init__(self, message: str, exit_code: int = EX_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


class _Group(click.Group):
    """Reports every failure, click's usage errors included, as one line on
    stderr: scripts and journald read one line more easily than a usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name or "mpqctl", complete_var, False, **extra)
        except _HELP_ERRORS as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _die(exc.format_message(), exc.exit_code)
        except click.Abort:
            _die("aborted", EX_FAILURE)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (BrokerError, redislib.exceptions.RedisError) as exc:
            url = redact(ctx.obj.url) if isinstance(ctx.obj, Target) else "?"
            raise CtlError(f"broker {url}: {exc}") from None


def _die(message: str, code: int):
    click.echo("mpqctl: " + " ".join(str(message).split()), err=True)
    sys.exit(code)


def redact(url: str) -> str:
    """The URL with its password (user-info or ?password=) replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    except ValueError:
        return "<unparsable URL>"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class Target:
    """What the global options point at: an optional service config and a broker,
    each opened on first use, so `push --broker URL` never reads a config."""

    def __init__(self, config_file: str | None, service: str | None, broker_url: str | None):
        self.config_file, self.service, self.broker_url = config_file, service, broker_url

    @cached_property
    def config(self):
        if not (self.config_file or self.service):
            return None
        from .config import ConfigError, config_path_for, load_config
        try:
            return load_config(self.config_file or config_path_for(self.service))
        except ConfigError as exc:
            raise CtlError(str(exc), EX_CONFIG) from None

    @cached_property
    def url(self) -> str:
        url = self.broker_url or (self.config.broker if self.config else None) \
            or os.environ.get("MPQUEUE_BROKER")
        if not url:
            raise CtlError("no broker: give --broker URL, --config FILE or --service NAME, "
                           "or set MPQUEUE_BROKER", EX_USAGE)
        return url

    @cached_property
    def broker(self):
        if self.url.startswith("sync:"):
            raise CtlError("broker sync:// runs each job inside the process that pushes it and keeps "
                           "nothing for mpqctl to see; use a redis:// or sqlite:// broker", EX_USAGE)
        try:
            return open_broker(self.url)
        except (BrokerError, ValueError) as exc:
            message = str(exc).replace(self.url, redact(self.url))
            raise CtlError(f"broker {redact(self.url)}: {message}") from None

    @property
    def max_payload(self) -> int:
        return self.config.max_payload if self.config else DEFAULT_MAX_PAYLOAD

    def config_queues(self) -> list[str]:
        return list(self.config.queues) if self.config else []

    def known_queues(self) -> list[str]:
        return sorted(set(self.config_queues()) | set(self.broker.queues()))

    def check_queue(self, queue: str) -> None:
        """A queue nobody declared is most likely a typo: refuse rather than show zeros."""
        if queue in self.config_queues():
            return
        known = self.known_queues()
        if queue not in known:
            raise CtlError(f"unknown queue {queue!r} (known: {', '.join(known) or 'none'})")

    def close(self) -> None:
        if "broker" in self.__dict__:
            self.broker.close()


pass_target = click.make_pass_decorator(Target)


# -- parameter types: each bad value becomes a one-line error naming its option, exit 2
class QueueName(click.ParamType):
    name = "queue"

    def convert(self, value, param, ctx):
        if not QUEUE_NAME.fullmatch(value):
            self.fail(f"{value!r} is not a queue name (letters, digits, '_', '.', '-')", param, ctx)
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
        if not isinstance(data, self.kind):
            want = "an array" if self.kind is list else "an object"
            self.fail(f"expected {want}, got {type(data).__name__} {value!r}", param, ctx)
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
        # A time without an offset is local time, as a person typing it means.
        return when if when.tzinfo else when.astimezone()


def _json_flag(ctx, param, value):
    # ctx.meta is shared by the whole context chain, so the flag counts whether
    # it came before or after the command.
    if value:
        ctx.meta["mpqctl.json"] = True


json_option = click.option("--json", is_flag=True, expose_value=False, callback=_json_flag,
                           help="Print JSON (shapes: see the command's help).")


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def _emit(data, human) -> None:
    """Print `data` as JSON under --json, else `human` (a string or a callable making one)."""
    if click.get_current_context().meta.get("mpqctl.json"):
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(human() if callable(human) else human)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="The service's YAML file (gives the broker, queues and max_payload).")
@click.option("--service", "-s", metavar="NAME", help="The service NAME, i.e. its config in the config directory.")
@click.option("--broker", "-b", metavar="URL", help="Broker URL; overrides the config's.")
@json_option
@click.version_option(__version__, prog_name="mpqctl")
@click.pass_context
def main(ctx, config_file, service, broker):
    """Inspect and administer mpqueue queues.

    The broker is --broker URL, else the `broker` of the service's config
    (--config FILE or --service NAME), else $MPQUEUE_BROKER.

    --json (before or after the command) prints JSON; its shapes, given in
    each command's --help, are a stable contract. Errors are one line on
    stderr, `mpqctl: ...`.

    \b
    Exit status: 0 ok; 1 failure (broker unreachable, unknown queue or job,
    payload too large, not confirmed); 2 bad usage or argument; 78 bad config.
    """
    if config_file and service:
        raise click.UsageError("give --config FILE or --service NAME, not both")
    ctx.obj = Target(config_file, service, broker)
    ctx.call_on_close(ctx.obj.close)


@main.command()
@click.argument("queue", type=QueueName())
@click.argument("task")
@click.option("--args", "args_", type=JsonValue(list), help="Positional arguments, a JSON array.")
@click.option("--kwargs", type=JsonValue(dict), help="Keyword arguments, a JSON object.")
@click.option("--delay", type=click.FloatRange(min=0), metavar="SECONDS", help="Run no sooner than this.")
@click.option("--eta", type=IsoTime(), help="Run at this time (no offset: local time).")
@click.option("--priority", type=click.IntRange(jobmod.MIN_PRIORITY, jobmod.MAX_PRIORITY), default=0,
              show_default=True, help="Higher runs first.")
@json_option
@pass_target
def push(target, queue, task, args_, kwargs, delay, eta, priority):
    """Enqueue a job of TASK ('module:function') on QUEUE; print its id.

    \b
    JSON: {"id": "<job id>"}
    """
    _check_push_options(task, delay, eta)
    if target.config and queue not in target.config_queues():
        click.echo(f"mpqctl: warning: service {target.config.name} has no queue {queue!r}", err=True)
    client = Client(target.url, broker=target.broker, max_payload=target.max_payload)
    try:
        job_id = client.push(queue, task, args_ or [], kwargs or {}, delay=delay, eta=eta, priority=priority)
    except jobmod.PayloadError as exc:
        raise CtlError(str(exc)) from None
    _emit({"id": job_id}, job_id)


def _check_push_options(task, delay, eta) -> None:
    if ":" not in task:
        raise click.BadParameter(f"expected a name like 'module:function', got {task!r}", param_hint="'TASK'")
    if delay is not None and not math.isfinite(delay):
        raise click.BadParameter(f"expected a finite number of seconds, got {delay}", param_hint="'--delay'")
    if delay is not None and eta is not None:
        raise click.UsageError("give --delay or --eta, not both")


@main.command()
@click.argument("queues", nargs=-1, type=QueueName())
@json_option
@pass_target
def status(target, queues):
    """Counts per queue (default: the config's queues, else every queue the
    broker knows), then every live node and its workers.

    \b
    JSON: {"queues": {"<queue>": {"ready": n, "scheduled": n, "running": n,
                                  "failed": n, "done_total": n, "failed_total": n}},
           "nodes": [{"node": id, "service": name, "host": name, "pid": n,
                      "queues": {"<queue>": {"workers": n, "busy": n, "idle": n}},
                      "done": n, "failed": n, "started_at": epoch,
                      "heartbeat_at": epoch, "heartbeat_age": seconds}]}
    (a node is its service's last heartbeat as sent, plus heartbeat_age; ages
    compare that node's clock with this host's)
    """
    for queue in queues:
        target.check_queue(queue)
    names = queues or target.config_queues() or target.broker.queues()
    counts = {q: target.broker.counts(q) for q in names}
    now = time.time()
    nodes = [dict(n, heartbeat_age=round(max(0.0, now - n.get("heartbeat_at", now)), 1))
             for n in target.broker.nodes()]
    _emit({"queues": counts, "nodes": nodes}, lambda: _status_text(counts, nodes))


@main.command()
@click.argument("queue", type=QueueName())
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Show at most N jobs.")
@click.option("--traceback", "tracebacks", is_flag=True, help="Show each job's traceback.")
@json_option
@pass_target
def failed(target, queue, limit, tracebacks):
    """List failed jobs of QUEUE, oldest failure first.

    \b
    JSON: [{"id": id, "task": name, "args": [...], "kwargs": {...}, "attempts": n,
            "error": {"type": kind, "message": text, "traceback": text,
                      "at": epoch, "attempts": n}}]
    (type is error, timeout, crashed, lost, unknown_task or bad_payload; the
    traceback is always in JSON; task/args/kwargs are null for an unreadable job)
    """
    target.check_queue(queue)
    jobs = [_failed_entry(*row) for row in target.broker.failed(queue, limit)]
    jobs.sort(key=lambda j: j["error"].get("at") or 0)
    _emit(jobs, lambda: _failed_text(queue, jobs, tracebacks))


def _failed_entry(job_id: str, envelope: str, error_json: str) -> dict:
    try:
        error = json.loads(error_json or "{}")
    except ValueError:
        error = {"message": error_json}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    error = {"type": None, "message": "", "traceback": "", "at": None, **error}
    fields = _job_fields(envelope)
    del fields["priority"]          # not part of the documented `failed` shape
    return {"id": job_id, **fields, "error": error}


def _job_fields(envelope: str) -> dict:
    try:
        job = jobmod.decode(envelope)
    except jobmod.PayloadError:
        return {"task": None, "args": None, "kwargs": None, "attempts": jobmod.split_header(envelope)[1],
                "priority": None}
    return {"task": job.task, "args": job.args, "kwargs": job.kwargs, "attempts": job.attempts,
            "priority": job.priority}


@main.command()
@click.argument("queue", type=QueueName())
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Retry every failed job of QUEUE.")
@json_option
@pass_target
def retry(target, queue, ids, all_):
    """Move failed jobs of QUEUE (the IDs, or --all) back to ready, attempts reset.

    Ids not in the failed store are reported on stderr; exit 1 if none was.

    \b
    JSON: {"queue": name, "requeued": n, "not_found": [id, ...]}
    """
    if all_ == bool(ids):
        raise click.UsageError("give job IDs or --all (one of them)")
    target.check_queue(queue)
    missing = []
    if all_:
        moved = target.broker.requeue_failed(queue, None)
    else:
        # One id per call: the count it returns then says exactly which ids were there.
        ids = list(dict.fromkeys(ids))
        missing = [i for i in ids if target.broker.requeue_failed(queue, [i]) == 0]
        moved = len(ids) - len(missing)
        if not moved:
            raise CtlError(f"no failed job {', '.join(missing)} in queue {queue}")
    if missing:
        click.echo(f"mpqctl: not in the failed store of {queue}: {', '.join(missing)}", err=True)
    _emit({"queue": queue, "requeued": moved, "not_found": missing}, f"requeued {moved} job(s) of {queue}")


@main.command()
@click.argument("job_id", metavar="ID")
@click.option("--queue", "-q", type=QueueName(), help="Look only in this queue (default: every known queue).")
@json_option
@pass_target
def job(target, job_id, queue):
    """Show one job: its state and what the broker knows of it.

    \b
    JSON: {"id": id, "queue": name, "state": "scheduled|ready|running|done|failed",
           "task": name, "args": [...], "kwargs": {...}, "attempts": n, "priority": n,
           plus by state:
             scheduled: "due_at": epoch, "last_error": {...} or null
             ready:     "last_error": {...} or null
             running:   "consumer": name of the holder (e.g. "<node>/<pid>")
             failed:    "error": {"type", "message", "traceback", "at", "attempts"}
             done:      "result": value, "finished_at": epoch, "duration_ms": n}
    (a done job keeps no arguments: args, kwargs and priority are null)
    """
    for q in [queue] if queue else target.known_queues():
        found = target.broker.find(q, job_id)
        if found:
            info = _job_info(job_id, q, found)
            return _emit(info, lambda: _job_text(info))
    raise CtlError(f"job {job_id} not found" + (f" in queue {queue}" if queue else ""))


def _job_info(job_id: str, queue: str, found: dict) -> dict:
    state = found["state"]
    info = {"id": job_id, "queue": queue, "state": state,
            "task": None, "args": None, "kwargs": None, "attempts": None, "priority": None}
    if found.get("envelope"):
        info.update(_job_fields(found["envelope"]))
    if state == "done":
        info.update(task=found.get("task"), attempts=found.get("attempts"), result=found.get("result"),
                    finished_at=found.get("finished_at"), duration_ms=found.get("duration_ms"))
    elif state == "failed":
        info["error"] = found.get("error")
    elif state == "running":
        info["consumer"] = found.get("consumer")
    else:
        if state == "scheduled":
            info["due_at"] = found["due_ms"] / 1000.0
        info["last_error"] = found.get("last_error")
    return info


@main.command()
@click.argument("queue", type=QueueName())
@yes_option
@json_option
@pass_target
def clean(target, queue, yes):
    """Drop every waiting (ready or scheduled) job of QUEUE; running and failed
    jobs stay. Asks first unless --yes.

    \b
    JSON: {"queue": name, "dropped": n}
    """
    target.check_queue(queue)
    if not yes:
        c = target.broker.counts(queue)
        _confirm(f"Drop {c['ready'] + c['scheduled']} waiting job(s) of queue {queue}?", f"clean {queue}")
    n = target.broker.clean(queue)
    _emit({"queue": queue, "dropped": n}, f"dropped {n} waiting job(s) of {queue}")


@main.command("purge-failed")
@click.argument("queue", type=QueueName())
@yes_option
@json_option
@pass_target
def purge_failed(target, queue, yes):
    """Empty the failed store of QUEUE. Asks first unless --yes.

    \b
    JSON: {"queue": name, "dropped": n}
    """
    target.check_queue(queue)
    if not yes:
        _confirm(f"Drop {target.broker.counts(queue)['failed']} failed job(s) of queue {queue}?",
                 f"purge-failed {queue}")
    n = target.broker.purge_failed(queue)
    _emit({"queue": queue, "dropped": n}, f"dropped {n} failed job(s) of {queue}")


def _confirm(question: str, what: str) -> None:
    """Ask on a terminal only: without one (cron, systemd, a pipe) nobody can
    answer, and waiting on stdin could hang forever."""
    hint = f"{what}: not confirmed, nothing dropped (give --yes to skip the question)"
    if not sys.stdin.isatty():
        raise CtlError(f"{what}: stdin is not a terminal, nothing dropped (give --yes to confirm)")
    try:
        ok = click.confirm(question, default=False, err=True)
    except click.Abort:
        click.echo(err=True)
        ok = False
    if not ok:
        raise CtlError(hint)


if __name__ == "__main__":
    main()
