"""FastAPI and plain asyncio: many concurrent pushes from one event loop, each
job run once by a real service. The FastAPI app (apps/signup) is driven through
its ASGI interface, as a server drives it."""
import asyncio
import json

import pytest

from tests.support import wait_for

from .conftest import app_service

N = 200


def signup_service(service):
    return app_service(service, None, ["signup.tasks"], "signup", workers=2)


def test_many_concurrent_apush_calls_from_one_loop_each_run_once(service, producer, rdb):
    from signup.tasks import send_welcome
    signup_service(service).start()

    async def main():
        ids = await asyncio.gather(*(send_welcome.apush(f"u{i}@example.org") for i in range(N)))
        await producer.aclose()
        return ids
    ids = asyncio.run(main())
    assert len(set(ids)) == N
    wait_for(lambda: rdb.llen("signup:sent") >= N, 30, what=f"{N} jobs")
    assert sorted(rdb.lrange("signup:sent", 0, -1)) == sorted(f"u{i}@example.org" for i in range(N))


async def asgi_post(app, path: str, query: str):
    """One POST through the app's ASGI interface: (status, JSON body)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def test_a_fastapi_handler_pushes_concurrently_without_blocking(service, producer, rdb):
    pytest.importorskip("fastapi")
    from signup.api import app
    signup_service(service).start()

    async def main():
        # A ticker on the same loop: a push that blocked the loop would stall it.
        ticks, stop = [], asyncio.Event()

        async def tick():
            while not stop.is_set():
                ticks.append(asyncio.get_running_loop().time())
                await asyncio.sleep(0.005)
        ticker = asyncio.create_task(tick())
        replies = await asyncio.gather(*(asgi_post(app, "/signup", f"email=f{i}@example.org") for i in range(N)))
        stop.set()
        await ticker
        await producer.aclose()
        return replies, ticks
    replies, ticks = asyncio.run(main())
    assert {status for status, _ in replies} == {200}
    assert len({body["job"] for _, body in replies}) == N
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.5
    wait_for(lambda: rdb.llen("signup:sent") >= N, 30, what=f"{N} jobs")
    assert sorted(rdb.lrange("signup:sent", 0, -1)) == sorted(f"f{i}@example.org" for i in range(N))


def test_a_fastapi_handler_awaits_results_concurrently_without_blocking(service, producer, rdb):
    pytest.importorskip("fastapi")
    from signup.api import app
    signup_service(service).start()

    async def main():
        # A ticker on the same loop: a wait that blocked the loop would stall it.
        ticks, stop = [], asyncio.Event()

        async def tick():
            while not stop.is_set():
                ticks.append(asyncio.get_running_loop().time())
                await asyncio.sleep(0.005)
        ticker = asyncio.create_task(tick())
        replies = await asyncio.gather(*(asgi_post(app, "/signup/wait", f"email=w{i}@example.org")
                                         for i in range(N)))
        stop.set()
        await ticker
        await producer.aclose()
        return replies, ticks
    replies, ticks = asyncio.run(main())
    # Each request answered once its job had run, with the job's result
    assert {status for status, _ in replies} == {200}
    assert {body["result"] for _, body in replies} == {None}
    assert rdb.llen("signup:sent") == N
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.5
