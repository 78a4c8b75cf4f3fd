"""The metrics' pure parts: a worker's tally as the supervisor reads and folds
it, the exposition parsed back with prometheus_client's parser, and the Grafana
dashboard naming only metrics that exist."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mpqueue.supervisor import procstats
from mpqueue.supervisor.metrics import Snapshot, read_queues, render
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


def test_a_jobs_end_in_one_call_reads_back_as_a_count_and_a_duration():
    # Given one tally written with ended() and one with count() + observe_duration()
    a, b = WorkerTally("q"), WorkerTally("q")
    for task, outcome, reason, seconds in (("a:b", "done", "", 0.02), ("a:b", "failed", "timeout", 40.0),
                                           ("a:c", "cancelled", "kill", 0.0004)):
        a.ended(task, outcome, reason, seconds)
        b.count(task, outcome, reason)
        b.observe_duration(task, seconds)
    # Then both read back the same
    ra, rb = a.read(), b.read()
    assert ra.jobs == rb.jobs and len(ra.jobs) == 3
    assert {k: (h.counts, h.sum) for k, h in ra.durations.items()} == \
           {k: (h.counts, h.sum) for k, h in rb.durations.items()}
    a.close()
    b.close()


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


DASHBOARD = ROOT / "packaging/grafana/mpqueue-dashboard.json"


def test_the_grafana_dashboard_uses_only_metrics_we_export():
    # Given: a render of the supervisor's exposition with every family it can have non-empty
    totals = Totals()
    totals.count("q", "a:b", "done")
    totals.durations[("q", "a:b")] = __import__("mpqueue.tally").tally.Histogram()
    totals.waits["q"] = __import__("mpqueue.tally").tally.Histogram()
    text = render(Snapshot(totals=totals, queues=("q",), restarts={("q", "crashed"): 1},
                           workers={("q", "idle"): 1}, slots={("q", "busy"): 1},
                           ticks={("beat", "skipped"): 0}, processes=procstats.processes(os.getpid(), [])),
                  {"q": {"oldest_age": 0.0}}).decode()
    exported = set(re.findall(r"^((?:mpqueue|process)_\w+)", text, re.M))
    # When: every expression of the dashboard (panels and variables) is read
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = set(re.findall(r"\b((?:mpqueue|process)_\w+)", " ".join(exprs)))
    # Then: each names a series the exposition has
    assert used and used <= exported, used - exported
    for name in ("mpqueue_queue_oldest_job_age_seconds", "mpqueue_worker_slots", "mpqueue_schedule_ticks_total",
                 "process_resident_memory_bytes"):
        assert name in used, name


def test_the_grafana_dashboard_imports_with_a_data_source_input_and_grafanas_rate_interval():
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["type"] == "datasource" and dashboard["__inputs"][0]["pluginId"] == "prometheus"
    assert {r["id"] for r in dashboard["__requires"]} >= {"grafana", "prometheus", "timeseries"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        for t in p["targets"]:
            # every range is Grafana's, which follows the scrape interval and the zoom: no fixed [5m]
            assert set(re.findall(r"\[([^\]]*)\]", t["expr"])) <= {"$__rate_interval"}, t["expr"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for wanted in ("failed store", "running", "slot", "skipped", "oldest", "memory"):
        assert wanted in titles, wanted


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


def test_the_oldest_job_age_is_rendered_per_queue_and_zero_where_none_was_read():
    text = render(Snapshot(queues=("q", "r")), {"q": {"ready": 3, "oldest_age": 12.5}, "r": {}}).decode()
    ages = {s.labels["queue"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "mpqueue_queue_oldest_job_age_seconds"}
    assert ages == {"q": 12.5, "r": 0.0}
    # the broker did not answer: no age rather than a stale or made-up one
    text = render(Snapshot(queues=("q",)), None).decode()
    assert not [s for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "mpqueue_queue_oldest_job_age_seconds"]


def test_read_queues_joins_counts_ages_and_the_pause_of_each_queue():
    class Broker:
        def counts_and_ages(self, queues):
            return {q: {"ready": len(q)} for q in queues}, {q: 1.5 for q in queues}

        def paused(self, queues):
            return {"bb"} & set(queues)

        def queues(self):               # "ccc": pushed to, declared by no service
            return ["a", "ccc"]

        def nodes(self):
            return [{"queues": {"a": {"workers": 1}, "bb": {"workers": 2}}}]
    assert read_queues(Broker(), ["a", "bb"]) == {
        "a": {"ready": 1, "oldest_age": 1.5, "paused": False, "served": True},
        "bb": {"ready": 2, "oldest_age": 1.5, "paused": True, "served": True},
        "ccc": {"ready": 3, "oldest_age": 1.5, "paused": False, "served": False}}


def test_process_series_show_one_worker_per_slot_and_skip_a_process_that_is_gone():
    class Handle:
        def __init__(self, queue, index, pid, started_at):
            self.queue, self.index, self.pid, self.started_at = queue, index, pid, started_at
    # a retiring worker and its successor share slot (q, 0): the newer one is shown
    handles = [Handle("q", 0, os.getpid(), 1.0), Handle("q", 0, os.getpid(), 2.0), Handle("q", 1, 2 ** 22 + 7, 1.0)]
    procs = procstats.processes(os.getpid(), handles)
    assert [(p.role, p.queue, p.index) for p in procs] == [("supervisor", "", ""), ("worker", "q", "0"),
                                                           ("worker", "q", "1")]
    text = render(Snapshot(queues=("q",), processes=procs), {"q": {}}).decode()
    rss = {(s.labels["role"], s.labels["index"]): s.value for f in text_string_to_metric_families(text)
           for s in f.samples if s.name == "process_resident_memory_bytes"}
    assert set(rss) == {("supervisor", ""), ("worker", "0")}        # pid 2**22+7 does not exist
    assert all(v > 0 for v in rss.values())
    cpu = [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == "process_cpu_seconds_total"]
    assert len(cpu) == 2


def test_promtool_parses_every_dashboard_expression(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) not installed")
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"].replace("$__rate_interval", "5m").replace("$queue", ".*")
             for p in dashboard["panels"] for t in p["targets"]]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:expr{i}", "expr": e}
                                                         for i, e in enumerate(exprs)]}]}
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))          # JSON is YAML
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_queue_read_has_a_paused_gauge_one_while_paused():
    counts = {"a": {"ready": 3, "paused": True}, "b": {"ready": 0, "paused": False}}
    text = render(Snapshot(queues=("a", "b")), counts).decode()
    by_name = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["queue"]: s.value for s in by_name["mpqueue_queue_paused"].samples} == {"a": 1, "b": 0}


