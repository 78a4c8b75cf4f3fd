"""`mpqctl`: inspect and administer queues from the command line.

It talks to the broker only, never to a running service, so it works while the
service is down and from any host that can reach the broker. The JSON output
(`--json`, before or after the command) is a stable, documented contract; each
command's docstring gives its shape. Errors are never JSON: one line on stderr,
`mpqctl: <what is wrong>`, and a non-zero exit status.
"""
from __future__ import annotations

import sys
import time

import click

from .. import __version__, proc
from ..core import envelope as jobmod
from ..producer import handles
from ..producer.client import Client, result_ttls
from .common import Fail as CtlError
from .ctl_params import (FiniteFloat, IsoTime, JobId, JsonValue, QueueName, check_push_options, json_option,
                         yes_option)
from . import ctl_metrics, ctl_pause, ctl_schedules
from .jobview import failed_entry, holder, job_info
from .ctl_target import CtlGroup, Target, emit, pass_target
from ..supervisor.metrics import served_queues
from .ctl_text import failed_text, job_text, status_text

LIMIT_MAX = 1_000_000     # `failed --limit`: a larger N means every one, and must not overflow a broker's integer


@click.group(cls=CtlGroup, name="mpqctl", context_settings={"help_option_names": ["-h", "--help"]})
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
    payload too large, not confirmed); 2 bad usage or argument; 78 bad config
    or broker data of a newer format than this mpqctl understands.
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
@click.option("--delay", type=FiniteFloat(min=0), metavar="SECONDS", help="Run no sooner than this.")
@click.option("--eta", type=IsoTime(), help="Run at this time (no offset: local time).")
@click.option("--priority", type=click.IntRange(jobmod.MIN_PRIORITY, jobmod.MAX_PRIORITY), default=0,
              show_default=True, help="Higher runs first.")
@click.option("--new-queue", is_flag=True,
              help="Push even though no service declares QUEUE (yet): it is registered from now on.")
@click.option("--id", "job_id", type=JobId(), metavar="ID",
              help="The job's id, of your choice: while a job with it waits or runs, nothing is pushed.")
@json_option
@pass_target
def push(target, queue, task, args_, kwargs, delay, eta, priority, new_queue, job_id):
    """Enqueue a job of TASK ('module:function') on QUEUE; print its id.

    A QUEUE that neither the given config nor any service that ran on this
    broker declares is most likely a typo: refused (exit 1) unless --new-queue.
    (A broker no service has used yet knows no queue: anything goes there.)

    With --id ID, a job with that id waiting, scheduled or running already
    makes this push a no-op (exit 0; the id printed, a note on stderr): safe
    to repeat.

    \b
    JSON: {"id": "<job id>", "duplicate": false | true}
    """
    check_push_options(task, delay, eta)
    if not new_queue and (target.config or target.broker.queues()):
        target.check_queue(queue, hint="; --new-queue pushes anyway")
    client = Client(target.url, broker=target.broker, max_payload=target.max_payload)
    try:
        h = client.push(queue, task, args_ or [], kwargs or {}, delay=delay, eta=eta, priority=priority,
                        job_id=job_id)
    except jobmod.PayloadError as exc:
        raise CtlError(str(exc)) from None
    if h.duplicate:
        click.echo(f"mpqctl: job {h.id} is waiting or running already: nothing pushed", err=True)
    emit({"id": h.id, "duplicate": h.duplicate}, h.id)


@main.command()
@click.argument("queues", nargs=-1, type=QueueName())
@json_option
@pass_target
def status(target, queues):
    """Counts per queue (default: the config's queues, else every queue the
    broker knows; a paused one marked "(paused)", one no live node has workers for
    "(no workers)": its jobs wait until a service serving it starts; with a config,
    other queues with jobs waiting and no workers are listed too), then every live
    node and its workers.

    \b
    JSON: {"queues": {"<queue>": {"ready": n, "scheduled": n, "running": n,
                                  "failed": n, "done_total": n, "failed_total": n,
                                  "throttled_total": n (reserves the queue's rate
                                  limit cut short while jobs waited),
                                  "paused": true|false, "served": true|false}},
           "nodes": [{"node": id, "service": name, "host": name, "pid": n,
                      "queues": {"<queue>": {"workers": n, "busy": n, "idle": n,
                                             "concurrency": n, "slots": n, "busy_slots": n}},
                      "workers": [{"queue": name, "index": n, "pid": n,
                                   "running": {"<slot>": job id}}],
                      "done": n, "failed": n, "started_at": epoch,
                      "heartbeat_at": epoch, "heartbeat_age": seconds,
                      "alive": true|false|null}]}
    (a node is its service's last heartbeat as sent, plus heartbeat_age and
    alive; ages compare that node's clock with this host's. A node that stops
    cleanly is gone from the list at once. "alive" is false when the node's
    supervisor no longer runs (seen from its own host: killed outright), true
    when it runs, null on another host, where only the heartbeat age tells)
    """
    for queue in queues:
        target.check_queue(queue)
    names = list(queues or target.config_queues() or target.broker.queues())
    now = time.time()
    nodes = [dict(n, heartbeat_age=round(max(0.0, now - n.get("heartbeat_at", now)), 1), alive=proc.record_running(n))
             for n in target.broker.nodes()]
    served = served_queues(nodes)
    if not queues and target.config_queues():     # jobs waiting where no config of ours and no node looks
        names += [q for q in target.broker.queues() if q not in names and q not in served]
    paused = target.broker.paused(names)
    counts = {q: dict(target.broker.counts(q), paused=q in paused, served=q in served) for q in names}
    if not queues and target.config_queues():
        counts = {q: c for q, c in counts.items() if q in target.config_queues() or c["ready"] + c["scheduled"]}
    emit({"queues": counts, "nodes": nodes}, lambda: status_text(counts, nodes))


@main.command()
@click.option("--max-age", type=FiniteFloat(min=1), default=45.0, show_default=True, metavar="SECONDS",
              help="A node whose last heartbeat is older than this counts as gone (heartbeats are every 15 s).")
@json_option
@pass_target
def ping(target, max_age):
    """Probe for monitoring and health checks: exit 0 when the broker answers and
    at least one node of the service (of any service with --broker alone) has
    sent a heartbeat within --max-age seconds and is not known to be gone (a
    supervisor on this host that no longer runs); else exit 1 saying which.

    \b
    JSON: {"broker": "ok", "service": name or null, "nodes": n}
    """
    target.broker.ping()
    service = target.config.name if target.config else None
    now = time.time()
    live = [n for n in target.broker.nodes() if (service is None or n.get("service") == service)
            and now - n.get("heartbeat_at", 0) <= max_age and proc.record_running(n) is not False]
    if not live:
        raise CtlError(f"broker ok, but no live node of {f'service {service}' if service else 'any service'} "
                       f"(no heartbeat within {max_age:g} s from a node still running)")
    emit({"broker": "ok", "service": service, "nodes": len(live)},
          f"ok: broker answers; {len(live)} live node(s){f' of {service}' if service else ''}")


@main.command()
@click.argument("queue", type=QueueName())
@click.option("--limit", type=click.IntRange(min=1, max=LIMIT_MAX, clamp=True), default=100, show_default=True,
              help="Show at most N jobs (oldest first).")
@click.option("--traceback", "tracebacks", is_flag=True, help="Show each job's traceback.")
@json_option
@pass_target
def failed(target, queue, limit, tracebacks):
    """List failed jobs of QUEUE, oldest failure first.

    \b
    JSON: [{"id": id, "task": name, "args": [...], "kwargs": {...}, "attempts": n,
            "error": {"type": kind, "message": text, "traceback": text,
                      "at": epoch, "attempts": n}}]
    (type is error, timeout, crashed, lost, unknown_task, bad_payload or bad_result; the
    traceback is always in JSON; task/args/kwargs are null for an unreadable job)
    """
    target.check_queue(queue)
    jobs = [failed_entry(*row) for row in target.broker.failed(queue, limit)]
    jobs.sort(key=lambda j: j["error"].get("at") or 0)
    emit(jobs, lambda: failed_text(queue, jobs, tracebacks))


@main.command()
@click.argument("queue", type=QueueName())
@click.argument("ids", nargs=-1, type=JobId())
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
    emit({"queue": queue, "requeued": moved, "not_found": missing}, f"requeued {moved} job(s) of {queue}")


@main.command()
@click.argument("job_id", metavar="ID", type=JobId())
@click.option("--queue", "-q", type=QueueName(), help="Look only in this queue (default: every known queue).")
@json_option
@pass_target
def job(target, job_id, queue):
    """Show one job: its state and what the broker knows of it.

    \b
    JSON: {"id": id, "queue": name, "state": "scheduled|ready|running|done|failed|cancelled",
           "task": name, "args": [...], "kwargs": {...}, "attempts": n, "priority": n,
           plus by state:
             scheduled: "due_at": epoch, "last_error": {...} or null
             ready:     "last_error": {...} or null
             running:   "consumer": name of the holder (e.g. "<node>/<pid>"), and from
                        its node's last heartbeat "worker" ("<queue>/<index>"), "pid"
                        and "slot" (null when the heartbeat does not list it yet)
             failed:    "error": {"type", "message", "traceback", "at", "attempts"}
             done:      "result": value, "finished_at": epoch, "duration_ms": n
             cancelled: "cancelled_at": epoch, "was": "ready|scheduled|running"}
    (a done or cancelled job keeps no arguments: args, kwargs and priority are null)
    """
    q, found = (queue, target.broker.find(queue, job_id)) if queue else \
        handles.find_anywhere(target.broker, job_id, target.known_queues())
    if found:
        info = job_info(job_id, q, found)
        if info["state"] == "running":
            info.update(holder(target.broker.nodes(), info.get("consumer") or "", job_id))
        return emit(info, lambda: job_text(info))
    raise CtlError(f"job {job_id} not found" + (f" in queue {queue}" if queue else ""))


_NOT_CANCELLED = {"done": "has already ended (done)", "failed": "has already ended (failed)",
                  "was-cancelled": "was cancelled already", "unknown": "not found"}


@main.command()
@click.argument("job_id", metavar="ID", type=JobId())
@click.option("--queue", "-q", type=QueueName(), help="Look only in this queue (default: every known queue).")
@click.option("--kill", is_flag=True, help="If it is running, kill the worker running it (default: ask it to stop).")
@json_option
@pass_target
def cancel(target, job_id, queue, kill):
    """Cancel a job. Waiting (ready or scheduled): removed, it never runs.
    Running: asked to stop (the task sees current_job().cancelled), or with
    --kill the supervisor running it kills its worker within a second or so.
    Either way it ends as cancelled (no retry, no failure hook), kept like a
    result for its queue's result_ttl. Exit 1 if it had ended or is not found.

    \b
    JSON: {"id": id, "queue": name, "outcome": "cancelled" | "requested"}
    ("requested": it was running and is being stopped)
    """
    client = _client(target)
    q, answer = handles.cancel(client, job_id, kill, queue)
    if answer not in ("cancelled", "requested"):
        raise CtlError(f"job {job_id} {_NOT_CANCELLED.get(answer, answer)}" + (f" in queue {queue}" if queue else ""))
    text = (f"cancelled {job_id} (it was waiting: it will never run)" if answer == "cancelled"
            else f"{'killing the worker running' if kill else 'asked to stop:'} {job_id} (running)")
    emit({"id": job_id, "queue": q, "outcome": answer}, text)


def _client(target) -> Client:
    return Client(target.url, broker=target.broker, max_payload=target.max_payload,
                  result_ttls=result_ttls(target.config) if target.config else None)


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
    emit({"queue": queue, "dropped": n}, f"dropped {n} waiting job(s) of {queue}")


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
    emit({"queue": queue, "dropped": n}, f"dropped {n} failed job(s) of {queue}")


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


main.add_command(ctl_metrics.metrics)     # a command in a module of its own
main.add_command(ctl_schedules.schedules)
main.add_command(ctl_pause.pause)
main.add_command(ctl_pause.resume)

if __name__ == "__main__":
    main()
