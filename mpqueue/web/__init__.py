"""The web dashboard (`mpqueue web`, the unit mpqueue-web@NAME): one page over a
service's broker, like mpqctl, so it works while the service is down.

Flask is an optional dependency (`pip install 'mpqueue[web]'`, Debian's
python3-flask): nothing here imports it until the dashboard is started, and
`mpqueue web` without it says so in one line. Modules: settings.py (listen
address, token, read-only; the start-up rules), security.py (login, CSRF,
origin and host checks, sessions, response headers), throttle.py (login
back-off per address), snapshot.py (what the page shows, read from the broker),
history.py (the sparklines: the broker's points, and what the process samples),
app.py (the routes), gate.py (connections: request deadlines, a bounded pool of
threads), server.py (the process: werkzeug's request handler behind the gate,
signals, systemd readiness); templates/ and static/ are all the page needs.
"""
from __future__ import annotations

import importlib.util

from ..core import names
from .settings import ServeError, SetupError, WebSettings, resolve

FLASK_MISSING = "mpqueue web needs Flask: pip install 'mpqueue[web]' or apt install python3-flask"

__all__ = ["FLASK_MISSING", "ServeError", "SetupError", "WebSettings", "flask_available", "run"]


def flask_available() -> bool:
    return importlib.util.find_spec("flask") is not None


def run(cfg, listen: str | None = None, read_only: bool = False) -> int:
    """Serve the dashboard of service config `cfg` until SIGTERM or SIGINT; returns
    the exit status. Raises SetupError (a configuration the dashboard refuses)
    or ServeError before it serves."""
    if names.is_inline(cfg.broker):
        raise SetupError(f"{cfg.source}: broker: sync:// keeps its jobs inside the pushing process, so there "
                         "is nothing for a dashboard to show; use sqlite:///PATH or redis://HOST")
    settings = resolve(cfg, listen, read_only)
    from .server import serve
    return serve(cfg, settings)
