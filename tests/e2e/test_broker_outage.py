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
    svc = Service(tmp_path / "s", server.url)
    try:
        svc.start(wait_ready=False)
        svc.wait_message("STATUS=waiting for broker", 20)
        server.start()
        svc.wait_message("READY=1", 30)
        assert svc.log().count("broker unreachable at start") == 1
    finally:
        svc.stop()
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


def test_a_redis_that_hangs_does_not_silence_the_watchdog(tmp_path):
    # Given a service under a 4 s watchdog (a ping every 2 s) on a Redis of its own
    import signal
    import time
    server = RedisServer()
    svc = Service(tmp_path / "s", server.url)
    try:
        svc.start(extra_env={"WATCHDOG_USEC": "4000000"})
        # When Redis hangs: it keeps its connections but answers nothing (SIGSTOP)
        server.proc.send_signal(signal.SIGSTOP)
        try:
            pings, last, longest = 0, time.monotonic(), 0.0
            deadline = last + 12
            while time.monotonic() < deadline:
                now_pings = sum(1 for m in svc.read_messages() if "WATCHDOG=1" in m)
                now = time.monotonic()
                if now_pings > pings:
                    pings, longest, last = now_pings, max(longest, now - last), now
                time.sleep(0.05)  # ok: sampling the pings over a fixed window is the point
            longest = max(longest, time.monotonic() - last)
            # Then the pings never stop long enough for systemd to kill it (a restart
            # would not fix Redis), and STATUS says what is wrong
            assert longest < 4.0, f"watchdog silent for {longest:.1f} s while Redis hung"
            svc.wait_message("broker unreachable", 10)
        finally:
            server.proc.send_signal(signal.SIGCONT)
        # And when Redis answers again, jobs run
        Client(server.url).push("default", "testtasks:record", args=["after"])
        wait_for(lambda: server.client.llen("test:runs") == 1, 30, what="a job after Redis came back")
    finally:
        svc.stop()
        server.stop()


@pytest.mark.parametrize("mode", ["grab", "dispatch"])
def test_while_redis_is_down_nobody_spins(tmp_path, mode):
    # Given a service whose workers sit idle, in either fetch mode
    import time
    server = RedisServer()
    svc = Service(tmp_path / "s", server.url, {"queues": {"default": {"workers": 2, "mode": mode}}})
    try:
        svc.start()
        # When Redis goes away
        server.halt()
        svc.wait_message("broker unreachable", 20)
        # Then the processes back off instead of retrying on every turn: over a few
        # seconds they use a small fraction of one core (a spin uses all of it)
        processes = 1 + len(svc.worker_pids())
        before, start = svc.cpu_seconds(), time.monotonic()
        time.sleep(3)  # ok: CPU use is measured over a window, not waited for
        used = svc.cpu_seconds() - before
        assert used < 0.1 * (time.monotonic() - start) * processes, (used, mode)
        # And when Redis is back, jobs run
        server.start()
        Client(server.url).push("default", "testtasks:record", args=["after"])
        wait_for(lambda: server.client.llen("test:runs") == 1, 30, what="a job after Redis came back")
    finally:
        svc.stop()
        server.stop()
