"""Pausing a queue end to end: `mpqctl pause` on a running service stops its
workers taking jobs (on every node, in every fetch mode) while another queue
flows; STATUS=, `mpqctl status` and the metrics show it; it survives a restart;
`mpqctl resume` starts the waiting jobs at once, not at the 60 s fallback."""
from __future__ import annotations

import json

import pytest

from mpqueue.brokers import open_broker
from tests.e2e.test_ctl import ctl
from tests.e2e.test_metrics import samples, scrape, value
from tests.support import free_port, wait_for

QUEUES = {"default": {"workers": 2}, "other": {"workers": 1}}
PROMPTLY = 10.0          # well under the 60 s fallback: only resume's wake-up explains it


pytestmark = pytest.mark.each_broker


def runs(rdb) -> list[str]:
    return [line.split()[0] for line in rdb.lrange("test:runs", 0, -1)]


def push_paused_then_prove_the_others_flow(client, rdb, tags, probe):
    """Push `tags` to the paused queue, then `probe` to the other one; once the probe
    has run, the workers had every chance (the push woke them): nothing of `tags` ran."""
    for tag in tags:
        client.push("default", "testtasks:record", args=[tag])
    client.push("other", "testtasks:record", args=[probe])
    wait_for(lambda: probe in runs(rdb), 10, what=f"{probe} on the queue that is not paused")
    assert not set(tags) & set(runs(rdb))


def queue_status(broker_url) -> dict:
    out = ctl("--json", "status", url=broker_url)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["queues"]


def test_a_paused_queue_keeps_its_jobs_across_a_restart_and_runs_them_on_resume(service, client, broker_url, rdb):
    # Given a running service with metrics
    port = free_port()
    svc = service({"queues": QUEUES, "metrics": {"listen": f"127.0.0.1:{port}"}}).start()
    # When the operator pauses its queue "default"
    out = ctl("pause", "default", url=broker_url)
    assert (out.returncode, out.stdout.strip()) == (
        0, "queue default paused: workers take no new jobs; running ones finish")
    out = ctl("pause", "default", url=broker_url)
    assert (out.returncode, out.stdout.strip()) == (0, "queue default already paused")
    # Then jobs pushed to it stay ready while the other queue flows
    push_paused_then_prove_the_others_flow(client, rdb, ["a", "b", "c"], "probe1")
    status = queue_status(broker_url)
    assert status["default"]["ready"] == 3 and status["default"]["paused"] is True
    assert status["other"]["paused"] is False
    assert "default (paused)" in ctl("status", url=broker_url).stdout
    # And the metrics say so, for every queue
    text = scrape(port)
    assert value(text, "mpqueue_queue_paused", queue="default") == 1
    assert ("mpqueue_queue_paused", frozenset({("queue", "other")})) in samples(text)
    assert value(text, "mpqueue_queue_jobs", queue="default", state="ready") == 3
    # When the service restarts, the pause holds, and its STATUS= names it at once
    svc.stop()
    svc.start()
    svc.wait_message("paused: default", 10)
    push_paused_then_prove_the_others_flow(client, rdb, ["d"], "probe2")
    # When it is resumed, every waiting job runs promptly
    out = ctl("resume", "default", url=broker_url)
    assert (out.returncode, out.stdout.strip()) == (0, "queue default resumed: workers take its jobs again")
    wait_for(lambda: {"a", "b", "c", "d"} <= set(runs(rdb)), PROMPTLY, what="the paused jobs to run after resume")
    assert ctl("resume", "default", url=broker_url).stdout.strip() == "queue default is not paused"
    assert value(scrape(port), "mpqueue_queue_paused", queue="default") == 0
    wait_for(lambda: any(m.rstrip().endswith("broker ok") for m in svc.read_messages()[-3:]), 20,
             what="STATUS= without the pause")


@pytest.mark.parametrize("queue_cfg", [{"workers": 2, "mode": "dispatch"},
                                       {"workers": 1, "concurrency": 4},
                                       {"workers": 1, "mode": "dispatch", "concurrency": 4}],
                         ids=["dispatch", "concurrent", "dispatch-concurrent"])
def test_every_fetch_mode_honours_a_pause(service, client, broker_url, rdb, queue_cfg):
    service({"queues": {"default": queue_cfg, "other": {"workers": 1}}}).start()
    assert ctl("pause", "default", url=broker_url).returncode == 0
    push_paused_then_prove_the_others_flow(client, rdb, ["a", "b"], "probe")
    assert ctl("resume", "default", url=broker_url).returncode == 0
    wait_for(lambda: {"a", "b"} <= set(runs(rdb)), PROMPTLY, what="the paused jobs to run after resume")


def test_a_job_running_when_its_queue_is_paused_finishes_and_is_acked(service, client, broker_url, rdb):
    service({"queues": QUEUES}).start()
    job = client.push("default", "testtasks:hold", args=["long"])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="the job to start")
    assert ctl("pause", "default", url=broker_url).returncode == 0
    rdb.rpush("test:release:long", "go")
    wait_for(lambda: client.broker.find("default", job.id)["state"] == "done", 10, what="its ack while paused")


def test_two_nodes_on_one_broker_both_honour_the_pause(service, client, broker_url, rdb):
    # Given two nodes of one service on the same broker
    nodes = [service({"queues": QUEUES}).start(), service({"queues": QUEUES}).start()]
    assert len(json.loads(ctl("--json", "status", url=broker_url).stdout)["nodes"]) == 2
    # When the queue is paused: neither takes its jobs, while both serve the other queue
    assert ctl("pause", "default", url=broker_url).returncode == 0
    tags = [f"j{i}" for i in range(8)]
    push_paused_then_prove_the_others_flow(client, rdb, tags, "probe1")
    for i in range(4):           # several probes: each node's worker of "other" gets some
        client.push("other", "testtasks:record", args=[f"more{i}"])
    wait_for(lambda: {f"more{i}" for i in range(4)} <= set(runs(rdb)), 10, what="the other queue")
    assert queue_status(broker_url)["default"]["ready"] == 8
    # Then a resume wakes them: every job runs promptly, once
    assert ctl("resume", "default", url=broker_url).returncode == 0
    wait_for(lambda: set(tags) <= set(runs(rdb)), PROMPTLY, what="the paused jobs to run after resume")
    assert sorted(t for t in runs(rdb) if t in tags) == sorted(tags)
    assert all(n.proc.poll() is None for n in nodes)


def test_pause_and_resume_of_an_unknown_queue_fail_in_one_line(service, broker_url):
    service({"queues": QUEUES}).start()
    for command in ("pause", "resume"):
        out = ctl(command, "defualt", url=broker_url)
        assert out.returncode == 1 and out.stderr.strip().startswith("mpqctl: unknown queue 'defualt'")
        assert len(out.stderr.strip().splitlines()) == 1
    out = ctl("--json", "pause", "default", url=broker_url)
    assert json.loads(out.stdout) == {"queue": "default", "paused": True, "changed": True}


def test_mpqctl_metrics_broker_only_view_shows_the_pause(broker_url):
    # Given a broker that knows two queues, one paused, and no running service
    b = open_broker(broker_url)
    try:
        b.add_queues(["default", "other"])
        b.pause("default")
    finally:
        b.close()
    # When mpqctl prints the broker's view
    out = ctl("metrics", url=broker_url)
    # Then every queue has its paused gauge
    assert out.returncode == 0, out.stderr
    assert value(out.stdout, "mpqueue_queue_paused", queue="default") == 1
    assert ("mpqueue_queue_paused", frozenset({("queue", "other")})) in samples(out.stdout)
