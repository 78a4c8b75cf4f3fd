"""Flask: `framework: {flask: "myapp:create_app"}` in the service's YAML makes
each worker build the app once (an app factory, called with no arguments, or a
module attribute that is a Flask app) and run every job inside
`app.app_context()`, so tasks use `current_app`, its config and its extensions
as a view does. Flask's contexts live in context variables, so each job (a
thread's, or an async job's own asyncio task) has its own.

For the web side, `init_app(app)` gives the app its own client, kept in
`app.extensions["mpqueue"]` (a FlaskQueue), which `task.push()` uses inside the
app's context (and outside any, the first app's): the service named by the
environment's MPQUEUE_BROKER / MPQUEUE_CONFIG, else by `app.config`'s (the
rule of producer/default.py), so two apps can point at different brokers and a
test run can force `MPQUEUE_BROKER=sync://`. Under sync:// the app's jobs run
inside its app context, as in a worker, wherever they are pushed from.
"""
from __future__ import annotations

import logging
import weakref

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


class FlaskQueue:
    """mpqueue's extension object, `app.extensions["mpqueue"]`: the app's client
    (None in a process that has one already: a worker, or after connect()) and
    where its target came from (`origin`: "$MPQUEUE_BROKER", "MPQUEUE_CONFIG", ...)."""

    def __init__(self, client, origin: str):
        self.client, self.origin = client, origin


_extensions: list = []      # weak references, in the order init_app saw the apps


def init_app(app) -> FlaskQueue:
    """Give the app its client from the environment or its config (see above),
    unless this process has a client already (a worker has its own; so has a
    process that called connect())."""
    client, origin = None, ""
    if default._default is None:
        target, origin = default.target(app.config.get("MPQUEUE_BROKER"), app.config.get("MPQUEUE_CONFIG"))
        if target:
            client = default.make_client(target, scope=FlaskScope(app))
    ext = app.extensions["mpqueue"] = FlaskQueue(client, origin)
    _extensions[:] = [ref for ref in _extensions if ref() is not None]
    _extensions.append(weakref.ref(ext))
    default.add_source(app_client)
    return ext


def app_client():
    """The client of the app whose context this is; outside any, the first app's."""
    from flask import current_app, has_app_context

    if has_app_context():
        ext = current_app.extensions.get("mpqueue")
        return ext.client if ext is not None else None
    for ref in _extensions:
        ext = ref()
        if ext is not None and ext.client is not None:
            return ext.client
    return None
