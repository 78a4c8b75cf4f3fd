"""A node's record in `mpqctl status`, `mpqctl ping` and the dashboard after its
supervisor is gone: a clean stop removes it at once; a supervisor killed outright
shows as gone at once to readers on its own host (else its record ages out)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import BROKERS, broker_url_for, wait_for

ROOT = Path(__file__).resolve().parents[2]
# Far below the 90 s a heartbeat record lives: only a removal (or a marking) passes.
SOON = 5.0


@pytest.fixture(params=BROKERS)
def broker_url(request):
    return broker_url_for(request)


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
