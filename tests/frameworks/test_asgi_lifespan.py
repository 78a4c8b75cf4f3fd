"""mpqueue.contrib.asgi.lifespan (issue #28, item 7): a FastAPI app (apps/signup,
lifespan.py) connects task.apush() at the server's start-up and closes the
connection at its shutdown, driven through the ASGI lifespan protocol as a
server drives it."""
import asyncio

import pytest

from mpqueue.producer import default
from tests.support import wait_for

from .conftest import app_service
from .test_async_push import asgi_post

fastapi = pytest.importorskip("fastapi")


async def lifespan_event(app, queue_in, queue_out, kind):
    await queue_in.put({"type": f"lifespan.{kind}"})
    reply = await asyncio.wait_for(queue_out.get(), 10)
    assert reply["type"] == f"lifespan.{kind}.complete", reply


def test_the_lifespan_connects_apush_for_the_apps_life(service, rdb, monkeypatch):
    svc = app_service(service, None, ["signup.tasks"], "signup").start()
    monkeypatch.setenv("SIGNUP_MPQUEUE_CONFIG", str(svc.config_path))
    monkeypatch.delenv("MPQUEUE_CONFIG", raising=False)
    monkeypatch.delenv("MPQUEUE_BROKER", raising=False)
    default.set_default_client(None)
    import importlib

    import signup.lifespan
    app = importlib.reload(signup.lifespan).app

    async def main():
        queue_in, queue_out = asyncio.Queue(), asyncio.Queue()
        server = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, queue_in.get,
                                         queue_out.put))
        await lifespan_event(app, queue_in, queue_out, "startup")
        connected = default._default
        status, body = await asgi_post(app, "/signup", "email=life@example.org")
        waited = await asgi_post(app, "/signup/wait", "email=wait@example.org")
        await lifespan_event(app, queue_in, queue_out, "shutdown")
        await server
        return connected, status, body, waited
    connected, status, body, waited = asyncio.run(main())
    # Then the handler pushed through the client the lifespan made, gone after shutdown,
    # and a handler awaited its job's end (aresult) through that client
    assert connected is not None and status == 200 and body["job"]
    assert waited[0] == 200 and waited[1]["sent"] is True
    assert default._default is None
    wait_for(lambda: sorted(rdb.lrange("signup:sent", 0, -1)) == ["life@example.org", "wait@example.org"], 15,
             what="the jobs run")
