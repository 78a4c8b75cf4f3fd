"""The worker side of Django (`framework: {django: SETTINGS}` in the service's
YAML): set Django up once per worker process, after the fork, and handle its
database connections across jobs the way Django does across requests.

Django's connections are per thread. A plain job runs on one thread (the
worker's main one, or with `concurrency` one of its job threads) and its scope
runs `close_old_connections()` there before and after it: a connection the job
left broken (errors, autocommit left off, a transaction left open) or past
CONN_MAX_AGE is dropped, and the next job on that thread opens a fresh one. An
async job reaches the ORM through `sync_to_async` (Django's rule), whose calls
share one thread; its scope runs close_old_connections on that thread, as
Django's ASGI handler does for a request.

With DEBUG on (startproject's default), Django logs every query of a
connection in memory and clears the log at each request: the scope clears it
before each job too, and the worker warns once that DEBUG is on.

Under sync:// (InlineDjangoScope) a job runs in the pushing process, often
inside a transaction of its own caller (a TestCase wraps each test in one):
a connection inside an atomic block is left alone, as Django's test client
leaves it alone around a request.
"""
from __future__ import annotations

import logging
import os

from ...execution.runner import JobScope

log = logging.getLogger("mpqueue.worker")
SETTINGS_ENV = "DJANGO_SETTINGS_MODULE"


def boot(settings_module: str | None) -> "DjangoScope":
    if settings_module:
        os.environ[SETTINGS_ENV] = settings_module
    elif not os.environ.get(SETTINGS_ENV):
        raise RuntimeError(f"framework.django: no settings module: name one (framework: {{django: "
                           f"myproject.settings}}) or set {SETTINGS_ENV} in the service's environment")
    import django
    from django.db import connections

    try:
        django.setup()
    except ModuleNotFoundError as exc:
        raise _with_path_hint(exc, os.environ[SETTINGS_ENV]) from exc
    _import_task_modules()
    # Nothing crosses the fork (the supervisor never loads Django), but an app's
    # ready() may have opened a connection: jobs start without one.
    connections.close_all()
    return DjangoScope()


def _import_task_modules() -> None:
    """MPQUEUE_AUTODISCOVER = True in the settings: import each installed app's
    `tasks` module (Celery's autodiscover_tasks), so `imports:` need not list them.
    A TASKS backend of ours: import its runner (tasks.py registers run_task)."""
    from importlib import import_module

    from django.apps import apps
    from django.conf import settings
    from django.utils.module_loading import module_has_submodule

    if getattr(settings, "MPQUEUE_AUTODISCOVER", False):
        for app in apps.get_app_configs():
            # Not ours: its `tasks` is the Tasks backend, which needs Django >= 6 or the backport.
            if app.name != __package__ and module_has_submodule(app.module, "tasks"):
                import_module(f"{app.name}.tasks")
    backends = getattr(settings, "TASKS", None) or {}
    if any(isinstance(b, dict) and str(b.get("BACKEND", "")).startswith(__package__ + ".tasks.")
           for b in backends.values()):
        __import__(__package__ + ".tasks")


def _with_path_hint(exc: ModuleNotFoundError, settings_module: str) -> ModuleNotFoundError:
    """`No module named 'mysite'` says nothing of the fix when the project's
    directory is not on sys.path: say where to put it."""
    if exc.name and settings_module.split(".")[0] == exc.name.split(".")[0]:
        return ModuleNotFoundError(f"{exc} (the settings module {settings_module}: is the directory that holds "
                                   f"{exc.name.split('.')[0]}/ in the service's `path:`?)", name=exc.name)
    return exc


_warned_debug = False


def reset_query_log() -> None:
    """Under DEBUG, clear this thread's query logs, as Django's request_started does
    (else they grow across jobs); warn once per process that DEBUG is on."""
    global _warned_debug
    from django.conf import settings
    from django.db import reset_queries

    if settings.DEBUG:
        if not _warned_debug:
            _warned_debug = True
            log.warning("Django's DEBUG is on: every query is kept in memory until the next job starts, and "
                        "jobs run slower; set DEBUG = False for the workers")
        reset_queries()


def _before_job(close_old) -> None:
    reset_query_log()
    close_old()


class DjangoScope(JobScope):
    def __init__(self):
        from asgiref.sync import sync_to_async
        from django.db import close_old_connections
        self._close_old = self._closer(close_old_connections)
        self._abefore = sync_to_async(_before_job)      # thread_sensitive: the ORM's thread
        self._aclose_old = sync_to_async(self._close_old)

    def _closer(self, close_old_connections):
        return close_old_connections

    def enter(self):
        _before_job(self._close_old)

    def exit(self, token) -> None:
        try:
            self._close_old()
        except Exception:  # noqa: BLE001 - the job's outcome stands; the connection is dropped anyway
            log.warning("closing the job's database connections failed", exc_info=True)

    async def aenter(self):
        await self._abefore(self._close_old)

    async def aexit(self, token) -> None:
        try:
            await self._aclose_old()
        except Exception:  # noqa: BLE001
            log.warning("closing the job's database connections failed", exc_info=True)


class InlineDjangoScope(DjangoScope):
    """sync://'s scope, in the pushing process, whose connections belong to the
    caller: one inside an atomic block (a view's transaction, a TestCase's) is
    never touched, and one the caller may still be reading (an iterator) is not
    closed for its age; only a connection the job left broken (autocommit left
    off, a transaction left open, an error that made it unusable) is closed, so
    the caller's next query opens a fresh one."""

    def _closer(self, close_old_connections):
        from django.db import connections

        def close_broken_outside_transactions():
            for conn in connections.all():
                if conn.in_atomic_block or conn.connection is None:
                    continue
                left_open = conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"]
                if left_open or (conn.errors_occurred and not conn.is_usable()):
                    conn.close()
        return close_broken_outside_transactions
