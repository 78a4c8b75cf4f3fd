"""ASGI apps (FastAPI, Starlette, Quart...): connect `task.push()` / `apush()` for
the app's life and close the connection when the server shuts down.

    app = FastAPI(lifespan=mpqueue.contrib.asgi.lifespan("/etc/mpqueue/signup.yaml"))

or, inside a lifespan of your own, `async with mpqueue.contrib.asgi.connected(...)`.
The target is a service's YAML path or a broker URL; None reads MPQUEUE_BROKER /
MPQUEUE_CONFIG from the environment (producer/default.py's rule). Nothing here
imports a framework. The worker side of an async app needs no helper: its
`on_worker_start` / `on_worker_stop` hooks may be `async def`.
"""
from __future__ import annotations

import contextlib

from ..producer import default


@contextlib.asynccontextmanager
async def connected(target: str | None = None):
    """This process's default client for the block (yielded), closed at its end;
    the client before it is the default again afterwards."""
    if target is None:
        url, config = default.from_environment()
        target = url or config
        if not target:
            raise RuntimeError(f"mpqueue lifespan: no service: give a YAML path or a broker URL, or set "
                               f"{default.ENV_BROKER} / {default.ENV_CONFIG}")
    previous = default._default
    client = default.connect(str(target))
    try:
        yield client
    finally:
        if default._default is client:
            default.set_default_client(previous)
        await client.aclose()


def lifespan(target: str | None = None):
    """A lifespan function for FastAPI(lifespan=...) / Starlette(lifespan=...)."""
    @contextlib.asynccontextmanager
    async def app_lifespan(app):
        async with connected(target):
            yield               # no lifespan state: Starlette would want the server to support it
    return app_lifespan
