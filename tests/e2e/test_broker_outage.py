"""Redis unreachable at start, or going away mid-run: retry, log once, resume, lose nothing."""
import pytest

from mpqueue import Client
from tests.support import RedisServer, Service, wait_for


@pytest.fixture
def durable_redis():
    server = RedisServer(durable=True)
    yield server
    server.stop()


def test_service_waits_for_redis_at_start_and_then_becomes_ready(tmp_path):
    server = RedisServer(start=False)
    try:
        svc = Service(tmp_path / "s", server.url).start(wait_ready=False)
        svc.wait_message("STATUS=waiting for broker", 20)
        server.start()
        svc.wait_message("READY=1", 30)
        assert svc.log().count("broker unreachable at start") == 1
        svc.stop()
    finally:
        server.stop()


def test_jobs_survive_a_redis_restart_mid_run(tmp_path, durable_redis):
    svc = Service(tmp_path / "s", durable_redis.url).start()
    try:
        client = Client(durable_redis.url)
        client.push_many("default", ({"task": "testtasks:sleep_record", "args": [i, 0.01]} for i in range(200)))
        wait_for(lambda: durable_redis.client.llen("test:runs") >= 20, 20, what="some jobs done")
        # When Redis goes away for a while and comes back with its data
        durable_redis.halt()
        durable_redis.start()
        # Then every job still runs, and the outage was logged once, not per attempt
        wait_for(lambda: len(set(durable_redis.client.lrange("test:runs", 0, -1))) == 200, 60,
                 what="all 200 jobs done after the restart")
        counts = wait_for(lambda: (c := client.broker.counts("default"))["running"] == 0 and c, 30,
                          what="no job left running")
        assert counts["ready"] == 0 and counts["failed"] == 0
        # logged per outage and process, not per attempt; no tracebacks
        log = svc.log()
        assert 1 <= log.count("unreachable") <= 8, log
        assert "Traceback" not in log
    finally:
        svc.stop()
