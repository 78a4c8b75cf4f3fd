"""The sd_notify protocol as systemd would see it, on a datagram socket of our own."""
import signal
import time

from mpqueue import Client
from tests.support import wait_for


def count(svc, needle):
    return sum(1 for m in svc.read_messages() if needle in m)


def test_ready_comes_after_every_worker_booted_and_status_has_live_counts(service, redis_url, rdb):
    svc = service({"on_worker_start": "testtasks:on_start", "queues": {"default": {"workers": 3}}}).start()
    # READY=1 was waited for by start(): by then every worker had run its start hook
    assert rdb.llen("test:booted") == 3
    ready = next(m for m in svc.read_messages() if "READY=1" in m)
    assert f"MAINPID={svc.proc.pid}" in ready and "STATUS=3/3 workers" in ready
    Client(redis_url).push("default", "testtasks:record", args=["x"])
    wait_for(lambda: any("1 done, 0 failed" in m for m in svc.read_messages()), 10, what="STATUS with 1 done")
    assert any("ready; broker ok" in m for m in svc.read_messages())


def test_watchdog_pings_at_half_the_interval_and_stops_when_the_supervisor_is_frozen(service):
    svc = service().start(extra_env={"WATCHDOG_USEC": "1000000"})     # WatchdogSec=1s
    first = wait_for(lambda: count(svc, "WATCHDOG=1") >= 1 and time.monotonic(), 5, what="first ping")
    wait_for(lambda: count(svc, "WATCHDOG=1") >= 5, 5, what="5 pings")
    assert time.monotonic() - first < 3.5                               # about every 0.5 s
    # When the supervisor is frozen, it falls silent (systemd would kill and restart it)
    svc.signal(signal.SIGSTOP)
    try:
        frozen_at = count(svc, "WATCHDOG=1")
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert count(svc, "WATCHDOG=1") <= frozen_at + 1       # at most one already in flight
            time.sleep(0.05)  # ok: observing silence over a fixed window is the point
    finally:
        svc.signal(signal.SIGCONT)
    wait_for(lambda: count(svc, "WATCHDOG=1") > frozen_at + 1, 5, what="pings again after SIGCONT")


def test_stopping_is_announced_and_a_drain_extends_the_stop_timeout(service, redis_url, rdb):
    svc = service().start()
    Client(redis_url).push("default", "testtasks:sleep_record", args=["long", 1.5])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="job start")
    svc.signal(signal.SIGTERM)
    svc.wait_message("STOPPING=1", 5)
    svc.wait_message("EXTEND_TIMEOUT_USEC=", 5)
    assert svc.proc.wait(20) == 0


def test_workers_do_not_inherit_the_notify_socket(service, redis_url, rdb):
    tasks = __import__("tests.support", fromlist=["TASKS"]).TASKS + '''
@mpqueue.task(queue="default")
def env():
    r().rpush("test:runs", os.environ.get("NOTIFY_SOCKET", "-") + " " + os.environ.get("WATCHDOG_USEC", "-"))
'''
    service(tasks=tasks).start(extra_env={"WATCHDOG_USEC": "5000000"})
    Client(redis_url).push("default", "testtasks:env")
    wait_for(lambda: rdb.llen("test:runs") == 1, 10, what="env job")
    assert rdb.lrange("test:runs", 0, -1) == ["- -"]


def status_fields(svc):
    """The STATUS= fields as systemd reads them: one field per line of a datagram."""
    return [line[len("STATUS="):] for m in svc.read_messages() for line in m.split("\n") if line.startswith("STATUS=")]


def test_a_syntax_error_at_boot_reaches_status_on_one_line(service):
    svc = service(tasks="import mpqueue\ndef broken(:\n    pass\n").start(wait_ready=False)
    status = wait_for(lambda: next((s for s in status_fields(svc) if "SyntaxError" in s), None), 20,
                      what="STATUS= naming the SyntaxError")
    assert "testtasks.py" in status and "line 2" in status and " | " in status


def test_one_line_joins_every_kind_of_line_break_and_hides_passwords():
    from mpqueue.supervisor.notify import one_line
    assert one_line("a\n  b\r\n\nc\u2028d\x85e") == "a | b | c | d | e"
    assert one_line("waiting for broker: redis://:s3cret@h:6379/0\nerr") == "waiting for broker: redis://:***@h:6379/0 | err"
