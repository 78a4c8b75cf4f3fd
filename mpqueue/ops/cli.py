"""`mpqueue`: run a service in the foreground, check its configuration, or serve
its web dashboard (mpqueue/web/)."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import click
import yaml

from .. import __version__, ipc
from ..core import names
from ..core.config import ConfigError, load_config, load_service
from ..supervisor import lock
from ..supervisor.notify import Notifier
from ..supervisor.reload import ReloadStatus
from .common import Fail, OneLineGroup, die
from .ctl_params import FiniteFloat

PROG = "mpqueue"


def _load(name: str | None, config: str | None):
    if bool(name) == bool(config):
        raise click.UsageError("give a service NAME or --config FILE (one of them)")
    try:
        return load_config(config) if config else load_service(name)
    except ConfigError as exc:
        message = names.redact_text(str(exc))
        Notifier().fatal(f"invalid configuration: {message}", errno=22)   # EINVAL, for systemctl status
        die(PROG, message, ipc.EX_CONFIG)


@click.group(cls=OneLineGroup, name=PROG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG)
def main():
    """mpqueue: a systemd-native, multi-process job queue.

    A service is one YAML file: `mpqueue run orders` reads
    $MPQUEUE_CONFIG_DIR/orders.yaml (default /etc/mpqueue/orders.yaml).
    """


@main.command()
@click.argument("name", required=False)
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="YAML file of the service.")
@click.option("--reload-on-change", is_flag=True, help="Development: reload (as SIGHUP) when the task code or "
              "the YAML changes. Ignored under systemd.")
def run(name, config, reload_on_change):
    """Run a service in the foreground (logs to stderr).

    SIGTERM/SIGINT: graceful stop (running jobs finish, up to shutdown_timeout).
    SIGQUIT: immediate stop (running jobs go back to the queue).
    Exit status: 0 stopped, 1 error, 70 workers failed to boot, 78 bad configuration
    or broker data of a newer format.
    """
    cfg = _load(name, config)
    if names.is_inline(cfg.broker):
        die(PROG, f"{cfg.source}: broker: sync:// runs jobs inside the pushing process, so there is no "
                  "service to run; use sqlite:///PATH or redis://HOST for `mpqueue run`", ipc.EX_CONFIG)
    from .. import logsetup
    from ..brokers import DataFormatError
    from ..supervisor import Supervisor
    from ..supervisor.lock import AlreadyRunning, UnsafeRuntimeDir
    try:
        logsetup.setup_logging(cfg.log, cfg.name)
    except OSError as exc:                 # a log.file the service can't write: no restart loop
        message = logsetup.open_problem(exc, cfg.log, cfg.name)
        Notifier().fatal(message, errno=exc.errno or 5)
        die(PROG, message, ipc.EX_CONFIG)
    if reload_on_change:
        _watch(cfg)
    try:
        sys.exit(Supervisor(cfg).run())
    except AlreadyRunning as exc:
        Notifier().fatal(f"failed: {exc}", errno=16)    # EBUSY
        die(PROG, str(exc), ipc.EXIT_FAILED)
    except UnsafeRuntimeDir as exc:
        Notifier().fatal(f"failed: {exc}", errno=1)     # EPERM
        die(PROG, str(exc), ipc.EXIT_FAILED)
    except DataFormatError as exc:       # a newer release's data: restarting would not help
        Notifier().fatal(f"failed: {exc}", errno=93)    # EPROTONOSUPPORT
        die(PROG, str(exc), ipc.EX_CONFIG)


def _watch(cfg) -> None:
    from . import watch
    if watch.under_systemd():
        click.echo(f"{PROG}: --reload-on-change ignored: it is for development, and this runs under systemd "
                   "(INVOCATION_ID or NOTIFY_SOCKET set); deploys reload with `systemctl reload`", err=True)
        return
    watch.Watcher(cfg).start()


@main.command("reload")
@click.argument("name", required=False)
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="YAML file of the service.")
@click.option("--pid", type=click.IntRange(min=1), help="Supervisor pid (the unit passes systemd's $MAINPID; "
              "default: from the service's lock file). Signalled only if it holds the service's lock.")
@click.option("--timeout", type=FiniteFloat(min=0, min_open=True), default=120.0, show_default=True,
              help="Seconds to wait for the outcome.")
def reload_cmd(name, config, pid, timeout):
    """Reload a running service (SIGHUP) and wait until the reload has completed.

    Exit 0 when the new workers serve, 1 with the reason on stderr when the
    reload failed (e.g. an invalid YAML: the old workers keep serving).
    """
    service = _service_name(name, config)
    given, pid = pid, lock.holder(service, pid)
    if not pid:
        who = f"pid {given} does not hold" if given else "no process holds"
        raise Fail(f"service {service!r} is not running ({who} its lock {lock.lock_path(service)})")
    # A restarted supervisor counts reloads from 0 again: a status file left by
    # an earlier process (another pid) says nothing about this one.
    last = ReloadStatus.read(service)
    before = last["seq"] if last.get("pid") == pid else 0
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise Fail(f"service {service!r} is not running (pid {pid} is gone)") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ReloadStatus.read(service)
        if status.get("pid") == pid and status["seq"] > before and status["state"] in ("done", "failed"):
            if status["state"] == "failed":
                raise Fail(status["error"])
            click.echo(f"{service}: reloaded")
            return
        time.sleep(0.05)  # polling a status file the supervisor rewrites
    raise Fail(f"reload of {service!r} did not complete within {timeout:g} s")


@main.command()
@click.argument("name", required=False)
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="YAML file of the service.")
def check(name, config):
    """Validate a configuration file without starting anything (exit 78 if invalid)."""
    cfg = _load(name, config)
    from .. import logsetup
    problem = logsetup.log_file_problem(cfg.log, cfg.name)
    if problem:
        die(PROG, f"{cfg.source}: {problem}", ipc.EX_CONFIG)
    from .. import contrib      # imports no framework: finds the module the YAML names
    problem = contrib.problem(cfg.framework, cfg.path)
    if problem:
        die(PROG, f"{cfg.source or config}: {problem}", ipc.EX_CONFIG)
    queues = ", ".join(f"{q.name} ({q.workers} {q.mode})" for q in cfg.queues.values())
    schedules = f", schedules {', '.join(cfg.schedules)}" if cfg.schedules else ""
    click.echo(f"{cfg.source or config}: ok: service {cfg.name}, broker {names.redact(cfg.broker)}, queues {queues}"
               f"{schedules}")


@main.command()
@click.argument("name", required=False)
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="YAML file of the service.")
@click.option("--listen", metavar="HOST:PORT", help="Where to listen; overrides web.listen (default 127.0.0.1:9809).")
@click.option("--read-only", is_flag=True, help="Show everything, change nothing (as web.read_only: true).")
def web(name, config, listen, read_only):
    """Serve the web dashboard of a service: its queues, nodes, workers, scheduled
    and failed jobs, read from the broker alone (it works while the service is down).

    Beyond loopback only with web.token_file. Exit status: 0 stopped, 1 error
    (e.g. the port is taken), 78 bad configuration or no Flask installed.
    """
    from .. import web as dashboard
    if not dashboard.flask_available():
        click.echo(dashboard.FLASK_MISSING, err=True)
        sys.exit(ipc.EX_CONFIG)
    cfg = _load(name, config)
    try:
        sys.exit(dashboard.run(cfg, listen, read_only))
    except dashboard.SetupError as exc:
        die(PROG, str(exc), ipc.EX_CONFIG)
    except dashboard.ServeError as exc:
        die(PROG, str(exc), ipc.EXIT_FAILED)


def _service_name(name: str | None, config: str | None) -> str:
    """The service's name without validating its file: the running supervisor
    judges the new file and reports what is wrong with it."""
    if bool(name) == bool(config):
        raise click.UsageError("give a service NAME or --config FILE (one of them)")
    if name:
        return name
    try:
        data = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError):
        data = None
    declared = data.get("name") if isinstance(data, dict) else None
    return declared if isinstance(declared, str) else Path(config).stem


if __name__ == "__main__":
    main()
