"""A node's record in `mpqctl status`, `mpqctl ping` and the dashboard after its
supervisor is gone: a clean stop removes it at once; a supervisor killed outright
shows as gone at once to readers on its own host (else its record ages out)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpqueue.brokers import open_broker
from mpqueue.web.history import FirstSeen
from mpqueue.web.snapshot import nodes_view
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
# Far below the 90 s a heartbeat record lives: only a removal (or a marking) passes.
SOON = 5.0


pytestmark = pytest.mark.each_broker


def ctl(svc, *args):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MPQUEUE_", "NOTIFY_SOCKET"))}
    return subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--config", str(svc.config_path), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, env=base)


def service_nodes(svc) -> list[dict]:
    r = ctl(svc, "status", "--json")
    assert r.returncode == 0, r.stderr
    return [n for n in json.loads(r.stdout)["nodes"] if n["service"] == "svc"]


def started(service):
    svc = service().start()
    [node] = wait_for(lambda: service_nodes(svc), 20, what="the node's first heartbeat")
    assert node["pid"] == svc.proc.pid
    return svc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGQUIT, signal.SIGINT], ids=["TERM", "QUIT", "INT"])
def test_a_cleanly_stopped_node_is_no_longer_listed_nor_live(service, signum):
    # Given a running service whose node status lists
    svc = started(service)
    # When it is stopped cleanly (drain, quick stop, interrupt) and has exited
    svc.signal(signum)
    assert svc.proc.wait(30) == 0
    # Then status lists no node of it, long before its record would have expired
    wait_for(lambda: service_nodes(svc) == [], SOON, what="the stopped node's record to go")
    # And ping finds no live node
    r = ctl(svc, "ping")
    assert r.returncode == 1 and "no live node of service svc" in r.stderr, (r.stdout, r.stderr)


def test_a_killed_supervisor_shows_as_gone_at_once_on_its_own_host(service, broker_url):
    # Given a running service whose node status lists as alive (read on its own host)
    svc = started(service)
    assert service_nodes(svc)[0]["alive"] is True
    # When its supervisor is killed outright (no clean stop, its record stays behind)
    svc.signal(signal.SIGKILL)
    svc.proc.wait(10)
    # Then status still lists the record, young, but marks it as gone
    [node] = service_nodes(svc)
    assert node["alive"] is False and node["heartbeat_age"] < 60
    assert "gone" in ctl(svc, "status").stdout
    # And ping finds no live node, although the heartbeat is within --max-age
    r = ctl(svc, "ping")
    assert r.returncode == 1 and "no live node of service svc" in r.stderr, (r.stdout, r.stderr)
    # And the dashboard's view of the nodes marks it as gone too
    broker = open_broker(broker_url)
    try:
        [card] = nodes_view(broker.nodes(), {}, FirstSeen(), time.time())["nodes"]
    finally:
        broker.close()
    assert card["pid"] == svc.proc.pid and card["alive"] is False
