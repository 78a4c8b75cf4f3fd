"""Working inside the web frameworks people use: Django (contrib/django/) and
Flask (contrib/flask.py). Neither is a dependency: each is imported only by a
service whose YAML names it (`framework:`) or by code that imports its module.

A worker boots its framework once, after the fork and before it imports the
tasks (`boot`), and runs each job inside the framework's per-job scope (an
execution.runner.JobScope). Sits above the producer; nothing below imports it.
"""
from __future__ import annotations


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
