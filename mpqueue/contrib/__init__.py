"""Working inside the web frameworks people use: Django (contrib/django/) and
Flask (contrib/flask.py). Neither is a dependency: each is imported only by a
service whose YAML names it (`framework:`) or by code that imports its module.

A worker boots its framework once, after the fork and before it imports the
tasks (`boot`), and runs each job inside the framework's per-job scope (an
execution.runner.JobScope). Sits above the producer; nothing below imports it.
"""
from __future__ import annotations

import importlib.util
import os
import sys


def boot(framework):
    """Set up the framework a FrameworkConfig names in this worker process; its
    JobScope, or None for a service without one. Raises whatever the framework
    raises (the worker's boot fails with it)."""
    if framework is None:
        return None
    if framework.kind == "django":
        from .django.worker import boot as boot_django
        return boot_django(framework.target)
    if framework.kind == "flask":
        from .flask import boot as boot_flask
        return boot_flask(framework.target)
    raise ValueError(f"framework: unknown kind {framework.kind!r}")


def problem(framework, path) -> str | None:
    """What `mpqueue check` can tell without setting the framework up: the module
    the YAML names (the Django settings, the Flask app's) must be found from
    `path:`. One line saying what to do, or None. Only finds the module (its
    packages are imported, the module itself is not run: a settings module may
    need the service's environment)."""
    if framework is None:
        return None
    if framework.kind == "django":
        module = framework.target or os.environ.get("DJANGO_SETTINGS_MODULE")
        if not module:
            return None         # it may be in the unit's environment, which check can't see
    else:
        module = framework.target.partition(":")[0]
    saved = sys.path[:]
    sys.path[:0] = [p for p in path if p not in sys.path]
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError as exc:
        found, missing = None, exc.name or module
    except Exception as exc:  # noqa: BLE001 - a package's __init__ that raises
        return f"framework.{framework.kind}: importing {module} failed: {type(exc).__name__}: {exc}"
    else:
        missing = module
    finally:
        sys.path[:] = saved
    if found is not None:
        return None
    where = f"path: [{', '.join(path)}]" if path else "no path:"
    return (f"framework.{framework.kind}: no module named {missing!r} (for {module}): add the directory that "
            f"holds {missing.split('.')[0]}/ to the service's `path:` ({where})")
