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

    django.setup()
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


class DjangoScope(JobScope):
    def __init__(self):
        from asgiref.sync import sync_to_async
        from django.db import close_old_connections
        self._close_old = close_old_connections
        self._aclose_old = sync_to_async(close_old_connections)     # thread_sensitive: the ORM's thread

    def enter(self):
        self._close_old()

    def exit(self, token) -> None:
        try:
            self._close_old()
        except Exception:  # noqa: BLE001 - the job's outcome stands; the connection is dropped anyway
            log.warning("closing the job's database connections failed", exc_info=True)

    async def aenter(self):
        await self._aclose_old()

    async def aexit(self, token) -> None:
        try:
            await self._aclose_old()
        except Exception:  # noqa: BLE001
            log.warning("closing the job's database connections failed", exc_info=True)
