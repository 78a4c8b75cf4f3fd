"""The one process-wide default client, which `task.push()` uses: set by
`mpqueue.connect()`, by a worker for the jobs its tasks push, or taken from the
environment. The environment rule lives here so producers and mpqctl agree:
MPQUEUE_BROKER (a URL) wins over MPQUEUE_CONFIG (a service's YAML file)."""
from __future__ import annotations

import os

from .client import Client

ENV_BROKER, ENV_CONFIG = "MPQUEUE_BROKER", "MPQUEUE_CONFIG"
_default: Client | None = None


def from_environment() -> tuple[str | None, str | None]:
    """(broker URL, config path) as the environment gives them (either may be None)."""
    return os.environ.get(ENV_BROKER) or None, os.environ.get(ENV_CONFIG) or None


def set_default_client(client: Client | None) -> None:
    """The client `task.push()` uses in this process (workers set their service's)."""
    global _default
    _default = client


def connect(broker_url_or_config: str) -> Client:
    """Point `task.push()` in this process at a broker URL or a service's YAML file."""
    if "://" in broker_url_or_config:
        client = Client(broker_url_or_config)
    else:
        client = Client.from_config(broker_url_or_config)
    set_default_client(client)
    return client


def default_client() -> Client:
    if _default is None:
        url, cfg = from_environment()
        if url or cfg:
            return connect(url or cfg)
        raise RuntimeError(f"no broker configured for task.push(): call mpqueue.connect(URL or "
                           f"config path) or set {ENV_BROKER} / {ENV_CONFIG}")
    return _default
