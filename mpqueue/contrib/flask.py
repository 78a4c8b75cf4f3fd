"""Flask: `framework: {flask: "myapp:create_app"}` in the service's YAML makes
each worker build the app once (an app factory, called with no arguments, or a
module attribute that is a Flask app) and run every job inside
`app.app_context()`, so tasks use `current_app`, its config and its extensions
as a view does. Flask's contexts live in context variables, so each job (a
thread's, or an async job's own asyncio task) has its own.

For the web side, `init_app(app)` points `task.push()` at the service named by
`app.config["MPQUEUE_CONFIG"]` (its YAML path) or `["MPQUEUE_BROKER"]` (a URL).
"""
from __future__ import annotations

import logging

from ..core.names import import_string
from ..execution.runner import JobScope
from ..producer import default

log = logging.getLogger("mpqueue.worker")


def boot(spec: str) -> "FlaskScope":
    from flask import Flask

    target = import_string(spec)
    app = target if isinstance(target, Flask) else target()
    if not isinstance(app, Flask):
        raise TypeError(f"framework.flask: {spec} gave {type(app).__name__}, not a Flask app")
    return FlaskScope(app)


class FlaskScope(JobScope):
    def __init__(self, app):
        self.app = app

    def enter(self):
        ctx = self.app.app_context()
        ctx.push()
        return ctx

    def exit(self, ctx) -> None:
        try:
            ctx.pop()
        except Exception:  # noqa: BLE001 - e.g. the job pushed a context of its own and left it
            log.warning("leaving the job's app context failed", exc_info=True)


def init_app(app) -> None:
    """Connect `task.push()` from the app's config, unless this process has a
    client already (a worker has its own; so has a process that called connect())."""
    target = app.config.get("MPQUEUE_BROKER") or app.config.get("MPQUEUE_CONFIG")
    if target and default._default is None:
        default.connect(str(target))
