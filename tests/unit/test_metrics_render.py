"""The metrics' pure parts: a worker's tally as the supervisor reads and folds
it, the exposition parsed back with prometheus_client's parser, and the Grafana
dashboard naming only metrics that exist."""
import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mpqueue.supervisor.metrics import Snapshot, render
from mpqueue.tally import MAX_ROWS, OTHER, Totals, WorkerTally

ROOT = Path(__file__).resolve().parents[2]


def test_a_tally_reads_back_what_its_worker_counted_and_folds_into_totals():
    t = WorkerTally("q")
    t.count("a:b", "done")
    t.count("a:b", "done")
    t.count("a:c", "retried", "error")
    t.observe_duration("a:b", 0.02)
    t.observe_wait(-3.0)                      # a producer's clock ahead: counted as no wait
    t.recycling("max_jobs")
    read = t.read()
    assert read.jobs == {("q", "a:b", "done", ""): 2, ("q", "a:c", "retried", "error"): 1}
    assert read.durations[("q", "a:b")].sum == 0.02 and sum(read.waits["q"].counts) == 1
    assert t.exit_reason() == "max_jobs"
    totals = Totals()
    totals.merge(read)
    totals.merge(read)
    assert totals.jobs[("q", "a:b", "done", "")] == 4
    t.close()


def test_task_rows_are_bounded_whatever_the_names():
    t = WorkerTally("q")
    for i in range(MAX_ROWS + 50):
        t.count(f"m:t{i}", "done")
    names = {task for (_, task, _, _) in t.read().jobs}
    assert len(names) == MAX_ROWS and OTHER in names
    t.close()


def test_the_exposition_parses_and_escapes_label_values():
    totals = Totals()
    totals.count("q", 'evil"\\\n:task', "failed", "timeout", 3)
    text = render(Snapshot(totals=totals, queues=("q",)), {"q": {"ready": 5, "scheduled": 0, "running": 1,
                                                                "failed": 2}}).decode()
    by_name = {f.name: f for f in text_string_to_metric_families(text)}
    sample, = [s for s in by_name["mpqueue_jobs"].samples if s.value]
    assert sample.labels["task"] == 'evil"\\\n:task' and sample.value == 3
    assert {s.labels["state"]: s.value for s in by_name["mpqueue_queue_jobs"].samples}["ready"] == 5


def test_the_grafana_dashboard_uses_only_metrics_we_export():
    totals = Totals()
    totals.count("q", "a:b", "done")
    totals.durations[("q", "a:b")] = __import__("mpqueue.tally").tally.Histogram()
    totals.waits["q"] = __import__("mpqueue.tally").tally.Histogram()
    text = render(Snapshot(totals=totals, queues=("q",), restarts={("q", "crashed"): 1},
                           workers={("q", "idle"): 1}), {"q": {}}).decode()
    exported = set(re.findall(r"^(mpqueue_\w+)", text, re.M))
    dashboard = (ROOT / "packaging/grafana/mpqueue-dashboard.json").read_text()
    used = set(re.findall(r"mpqueue_\w+", " ".join(t["expr"] for p in json.loads(dashboard)["panels"]
                                                   for t in p["targets"])))
    assert used and used <= exported, used - exported


def test_every_series_is_there_from_start():
    text = render(Snapshot(queues=("q",), tasks={"a:b": "q", "elsewhere:t": "other"}, ticks={("beat", "fired"): 0,
                                                                                          ("beat", "skipped"): 0}),
                  {"q": {}}).decode()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}
    assert got[("mpqueue_jobs_total", (("outcome", "failed"), ("queue", "q"), ("reason", "error"),
                                       ("task", "a:b")))] == 0
    assert not any(dict(labels).get("task") == "elsewhere:t" for _, labels in got)   # not this service's queue
    assert got[("mpqueue_worker_restarts_total", (("queue", "q"), ("reason", "crashed")))] == 0
    assert got[("mpqueue_schedule_ticks_total", (("outcome", "skipped"), ("schedule", "beat")))] == 0
    assert got[("mpqueue_job_wait_seconds_count", (("queue", "q"),))] == 0
    assert got[("mpqueue_service_up", ())] == 1


def test_the_broker_only_view_says_the_service_is_down_and_claims_no_counter():
    text = render(Snapshot(queues=("q",), service_up=False), None).decode()
    got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert got == {"mpqueue_broker_up": 0, "mpqueue_service_up": 0, "mpqueue_build_info": 1}


def test_the_host_rule_refuses_names_that_are_not_this_hosts():
    from mpqueue.supervisor.metrics_http import host_allowed
    names = frozenset({"app1", "app1.example.org"})
    for ok in (None, "127.0.0.1:9808", "[::1]:9808", "localhost", "LOCALHOST:9808", "10.0.0.5:9808",
               "[2001:db8::5]:9808", "app1:9808", "app1.example.org.", "metrics.internal:9808"):
        assert host_allowed(ok, "metrics.internal", names), ok
    for bad in ("attacker.example", "attacker.example:9808", "app1.attacker.example", ""):
        assert not host_allowed(bad, "0.0.0.0", names), bad


def test_a_scrape_that_raises_closes_its_connection_and_the_endpoint_goes_on():
    import socket

    from mpqueue.supervisor.metrics_http import Server
    calls = []

    def scrape():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in rendering")
        return b"mpqueue_up 1\n"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = Server(listener, scrape, "127.0.0.1")
    server.start()
    try:
        answers = []
        for _ in range(2):
            with socket.create_connection(listener.getsockname(), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answers.append(b"".join(iter(lambda: s.recv(4096), b"")))
        assert answers[0] == b"" and answers[1].startswith(b"HTTP/1.1 200") and answers[1].endswith(b"mpqueue_up 1\n")
    finally:
        server.shutdown()
        server.server_close()


def test_every_queue_read_has_a_paused_gauge_one_while_paused():
    counts = {"a": {"ready": 3, "paused": True}, "b": {"ready": 0, "paused": False}}
    text = render(Snapshot(queues=("a", "b")), counts).decode()
    by_name = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["queue"]: s.value for s in by_name["mpqueue_queue_paused"].samples} == {"a": 1, "b": 0}


def test_read_queues_adds_whether_each_queue_is_paused_to_its_counts():
    from mpqueue.supervisor.metrics import read_queues

    class Broker:
        def counts_many(self, queues):
            return {q: {"ready": 1} for q in queues}

        def paused(self, queues):
            return {"b"} & set(queues)
    assert read_queues(Broker(), ["a", "b"]) == {"a": {"ready": 1, "paused": False},
                                                 "b": {"ready": 1, "paused": True}}
