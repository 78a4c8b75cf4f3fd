"""`flask mpqueue status|push|run`: mpqctl's status and push, and `mpqueue run`
(for development; systemd runs the service in production), for the service the
app's config names (MPQUEUE_CONFIG, the service's YAML path, or MPQUEUE_BROKER,
a URL), unless the environment names one: the rule init_app follows.

Every Flask app gets the group through the `flask.commands` entry point; an app
or extension may add it itself with `init_cli(app)`. Each command runs as
mpqueue's own, in a fresh process (exec), so its output and exit statuses (78
for a bad config) are those of mpqctl and `mpqueue run`.
"""
from __future__ import annotations

import os
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from ..producer import default

PASS_ON = {"ignore_unknown_options": True, "help_option_names": []}
mpqueue_cli = AppGroup("mpqueue", help="mpqueue: status, push and run for the service in the app's config.")


def init_cli(app) -> None:
    """Add `flask mpqueue ...` to `app` (idempotent)."""
    if "mpqueue" not in app.cli.commands:
        app.cli.add_command(mpqueue_cli)


def _target() -> str:
    """The service's YAML path or broker URL, by the one rule (producer/default.py):
    the environment's MPQUEUE_BROKER / MPQUEUE_CONFIG, else the app's config."""
    found, _ = default.target(current_app.config.get("MPQUEUE_BROKER"), current_app.config.get("MPQUEUE_CONFIG"))
    if not found:
        raise click.UsageError("the app's config names no service: set MPQUEUE_CONFIG (the service's YAML "
                               "path) or MPQUEUE_BROKER (a broker URL)")
    return found


def _where() -> list[str]:
    """mpqctl's option naming the app's service."""
    found = _target()
    return ["--broker", found] if "://" in found else ["--config", found]


def _exec(module: str, argv: list[str]):
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])


@mpqueue_cli.command("status", context_settings=PASS_ON)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def status(args):
    """Queue counts and live nodes (mpqctl status; e.g. --json)."""
    _exec("mpqueue.ops.ctl", [*_where(), "status", *args])


@mpqueue_cli.command("push", context_settings=PASS_ON)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def push(args):
    """Push a job: QUEUE TASK [--args JSON] [--kwargs JSON] ... (mpqctl push)."""
    _exec("mpqueue.ops.ctl", [*_where(), "push", *args])


@mpqueue_cli.command("run", context_settings=PASS_ON)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(args):
    """Run the service in the foreground, for development (`mpqueue run`)."""
    found = _target()
    if "://" in found:
        raise click.UsageError(f"flask mpqueue run needs the service's YAML (MPQUEUE_CONFIG), not a broker URL")
    _exec("mpqueue.ops.cli", ["run", "--config", found, *args])
