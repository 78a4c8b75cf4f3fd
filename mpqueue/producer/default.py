"""The one process-wide default client, which `task.push()` uses, and the one
rule for where it points, which producers, mpqctl and the framework
integrations (contrib/) all follow:

    an explicit argument (`client=`, `mpqueue.connect()`, a worker's own)
    > the environment (MPQUEUE_BROKER, a URL, over MPQUEUE_CONFIG, a YAML path)
    > a framework's setting (Django's settings, a Flask app's config)
    > nothing (an error saying what to set).

So a test run can always force `MPQUEUE_BROKER=sync://` from the environment,
whatever the settings say. A framework registers a `source`: a callable giving
its client (built by `target()` from the environment or its setting, with the
framework's per-job scope for sync://), or None when it has no setting.
"""
from __future__ import annotations

import os
import sys

from .client import Client

ENV_BROKER, ENV_CONFIG = "MPQUEUE_BROKER", "MPQUEUE_CONFIG"
_default: Client | None = None
_sources: list = []          # framework sources: () -> Client | None, first registered first
_env_clients: dict = {}      # the environment's target -> its client (kept apart from an explicit one)


def from_environment() -> tuple[str | None, str | None]:
    """(broker URL, config path) as the environment gives them (either may be None)."""
    return os.environ.get(ENV_BROKER) or None, os.environ.get(ENV_CONFIG) or None


def target(setting_url=None, setting_config=None) -> tuple[str | None, str]:
    """What a framework's client points at: (URL or YAML path, where it came from),
    the environment first, then the framework's URL setting, then its YAML one."""
    url, cfg = from_environment()
    for value, origin in ((url, f"${ENV_BROKER}"), (cfg, f"${ENV_CONFIG}"), (setting_url, ENV_BROKER),
                          (setting_config, ENV_CONFIG)):
        if value:
            return str(value), origin
    return None, ""


def make_client(broker_url_or_config: str, scope=None) -> Client:
    """A client for a broker URL or a service's YAML file; `scope` (an
    execution.runner.JobScope) wraps each job sync:// runs inline."""
    if "://" in broker_url_or_config:
        return Client(broker_url_or_config, scope=scope)
    return Client.from_config(broker_url_or_config, scope=scope)


def set_default_client(client: Client | None) -> None:
    """The client `task.push()` uses in this process (workers set their service's)."""
    global _default
    _default = client


def add_source(source) -> None:
    """Register a framework's source of clients (see the module's docstring)."""
    if source not in _sources:
        _sources.append(source)


def remove_source(source) -> None:
    if source in _sources:
        _sources.remove(source)


def connect(broker_url_or_config: str) -> Client:
    """Point `task.push()` in this process at a broker URL or a service's YAML file."""
    client = make_client(broker_url_or_config)
    set_default_client(client)
    return client


def default_client() -> Client:
    if _default is not None:
        return _default
    for source in list(_sources):      # each applies the environment first itself
        client = source()
        if client is not None:
            return client
    url, cfg = from_environment()
    if url or cfg:
        target = url or cfg
        if target not in _env_clients:
            _env_clients[target] = make_client(target)
        return _env_clients[target]
    raise RuntimeError(f"no broker configured for task.push(): call mpqueue.connect(URL or config path) or set "
                       f"{ENV_BROKER} / {ENV_CONFIG}{_framework_hint()}")


def _framework_hint() -> str:
    """A setting that names a broker but is never read: say what is missing. Only
    looks at frameworks this process loaded already (never imports one)."""
    conf = sys.modules.get("django.conf")
    if conf is not None and conf.settings.configured:
        setting = next((s for s in (ENV_BROKER, ENV_CONFIG) if getattr(conf.settings, s, None)), None)
        if setting and "mpqueue.contrib.django" not in conf.settings.INSTALLED_APPS:
            return (f" (the settings have {setting}, but it is read only by the app \"mpqueue.contrib.django\": "
                    f"add it to INSTALLED_APPS)")
    flask = sys.modules.get("flask")
    if flask is not None and flask.has_app_context():
        app = flask.current_app
        setting = next((s for s in (ENV_BROKER, ENV_CONFIG) if app.config.get(s)), None)
        if setting and "mpqueue" not in app.extensions:
            return (f" (app.config has {setting}, but it is read only by mpqueue.contrib.flask.init_app(app): "
                    f"call it in the app factory)")
    return ""
