"""The throughput history end to end: a real `mpqueue run` on a real redis-server
writes its points into the broker, and a dashboard started after the jobs ran
(and after the service stopped) shows them.

Both processes run with the minute shortened to a second: a wrapper sets the
class and module values tests may change (no YAML key, no environment variable),
then runs the `mpqueue` command line as usual."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from mpqueue.brokers import open_broker
from mpqueue.producer.client import Client
from tests.support import free_port, wait_for

SHORT_MINUTE = textwrap.dedent('''
    import sys
    from mpqueue.supervisor import history, loop
    from mpqueue.web import history as web_history
    history.HistoryWriter.every = 1.0        # a point a second,
    loop.HEARTBEAT_EVERY = 0.2               # looked at five times a second
    web_history.MINUTE_MS = 1000             # read as the dashboard's "minutes"
    web_history.REFRESH = 0.5
    from mpqueue.ops.cli import main
    sys.argv = ["mpqueue", *sys.argv[sys.argv.index("mpqueue.ops.cli") + 1:]]
    main()
''')


@pytest.fixture
def short_minute(tmp_path):
    path = tmp_path / "short_minute.py"
    path.write_text(SHORT_MINUTE)
    return (sys.executable, str(path))


def state(url: str) -> dict | None:
    """The dashboard's /api/state, or None while it does not answer."""
    try:
        with urllib.request.urlopen(url + "/api/state", timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return None


def test_a_dashboard_started_after_the_jobs_ran_shows_their_history(service, redis_url, short_minute, tmp_path):
    # Given a running service whose first history point is written
    svc = service({"queues": {"default": {"workers": 1, "retries": 0}}}).start(prefix=short_minute)
    broker = open_broker(redis_url)
    wait_for(lambda: broker.history(["default"], 0)["default"], 10, 0.05, what="the first point")
    # When 3 jobs succeed and 2 fail
    client = Client(redis_url)
    for _ in range(3):
        client.push("default", "testtasks:noop")
    for _ in range(2):
        client.push("default", "testtasks:fail")
    wait_for(lambda: (lambda c: (c["done_total"], c["failed_total"]) == (3, 2))(broker.counts("default")), 20,
             0.05, what="the jobs to end")
    # Then the service records them in the broker, a point per (shortened) minute
    wait_for(lambda: broker.history(["default"], 0)["default"][-1][1:] == (3, 2), 10, 0.05,
             what="a point with the totals")
    svc.stop()
    # When a dashboard starts after the service stopped
    port = free_port()
    log = open(tmp_path / "web.log", "wb")
    web = subprocess.Popen([*short_minute, "-m", "mpqueue.ops.cli", "web", "--config", str(svc.config_path),
                            "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True, env={**os.environ, "MPQ_TEST_REDIS": redis_url})
    try:
        def history():
            s = state(f"http://127.0.0.1:{port}")
            assert web.poll() is None, (tmp_path / "web.log").read_text()
            return s and next(q["history"] for q in s["queues"] if q["name"] == "default")
        h = wait_for(lambda: (lambda h: h if h and sum(h["done"]) == 3 else None)(history()), 20, 0.1,
                     what="the dashboard's history")
        # Then it shows the jobs done and failed, from the broker's points
        assert h["every"] == 1.0 and sum(h["failed"]) == 2
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
            web.wait()
        log.close()
        broker.close()
