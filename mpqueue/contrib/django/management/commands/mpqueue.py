"""`manage.py mpqueue run|check|status [more arguments]`: `mpqueue run`, `mpqueue
check` and `mpqctl status` for the service named by the MPQUEUE_CONFIG setting
(its YAML path; the environment's MPQUEUE_CONFIG / MPQUEUE_BROKER win, as for
task.push()), for those who keep their tools behind manage.py. Each runs as
mpqueue's own command, in a fresh process (exec): the supervisor never loads
Django, and exit statuses (78 for a bad config) are mpqueue's."""
from __future__ import annotations

import argparse
import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mpqueue.producer import default

COMMANDS = {"run": ("mpqueue.ops.cli", "run"), "check": ("mpqueue.ops.cli", "check"),
            "status": ("mpqueue.ops.ctl", "status")}


class Command(BaseCommand):
    help = "Run, check or show the mpqueue service named by the MPQUEUE_CONFIG setting."
    requires_system_checks = []        # the service's workers run their own Django; nothing to check here

    def add_arguments(self, parser):
        parser.add_argument("action", choices=sorted(COMMANDS))
        parser.add_argument("rest", nargs=argparse.REMAINDER, help="passed on, e.g. status --json")

    def handle(self, action, rest, **options):
        module, command = COMMANDS[action]
        given = any(a in ("-c", "--config") or a.startswith("--config=") for a in rest)
        # The one rule (producer/default.py): the environment's, else the settings'.
        found, _ = default.target(getattr(settings, "MPQUEUE_BROKER", None), getattr(settings, "MPQUEUE_CONFIG", None))
        if not given and (not found or "://" in found and action != "status"):
            raise CommandError("no service: set MPQUEUE_CONFIG (the service's YAML path) in the settings, "
                               "or pass --config FILE")
        where = [] if given else ["--broker", found] if "://" in found else ["--config", found]
        argv = [module, *where, command, *rest] if module.endswith("ctl") else [module, command, *where, *rest]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", *argv])
