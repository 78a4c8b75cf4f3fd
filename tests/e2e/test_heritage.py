"""End-to-end: the features mpqueue inherits from its PHP ancestors (docs/howto/from-php.md),
each driven through a real `mpqueue run`, real worker processes and a real broker.

Hooks and job-context tasks used here are in the TASKS text of tests/support.py
(`queue_hook`, `task_hook`, `before`, `step`, `whoami`, `Report`, `*_hooked`, `hold`);
the hooks record what they were called with in the Redis list `test:hooked`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpqueue import Client
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


# Most tests here run on each broker: the same scenarios are the contract.
pytestmark = pytest.mark.each_broker


# -- helpers
def listed(rdb, key):
    return rdb.lrange(key, 0, -1)


def hooked(rdb) -> list[dict]:
    """What the failure hooks were called with, oldest first."""
    return [json.loads(x) for x in listed(rdb, "test:hooked")]


def state_of(client, job_id, queue="default"):
    return (client.broker.find(queue, job_id) or {}).get("state")


def settled(client, job_id, state, timeout=10.0, queue="default"):
    """Wait until the job is in `state`; returns what the broker knows of it."""
    return wait_for(lambda: (s := client.broker.find(queue, job_id)) and s["state"] == state and s,
                    timeout, what=f"job {job_id} {state}")


def drained(client, queue="default", timeout=10.0):
    """Wait until nothing of the queue is waiting or running (hook jobs included)."""
    return wait_for(lambda: (c := client.broker.counts(queue)) and c["ready"] + c["scheduled"] + c["running"] == 0
                    and c, timeout, what=f"queue {queue} drained")


def cli(module, *args, env=None):
    """Run `python -m mpqueue.ops.<module> args...` (ops.cli = `mpqueue`, ops.ctl = `mpqctl`)."""
    base = {k: v for k, v in os.environ.items() if k not in ("MPQUEUE_BROKER", "NOTIFY_SOCKET")}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", f"mpqueue.ops.{module}", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=30, stdin=subprocess.DEVNULL, env={**base, **(env or {})})


# -- 1. before_job
def test_the_before_job_hook_runs_in_the_worker_before_each_attempt_with_the_jobs_info(service, broker_url, rdb):
    # Given a queue with a before_job hook
    svc = service({"queues": {"default": {"workers": 1, "before_job": "testtasks:before"}}}).start()
    client = Client(broker_url)
    # When a job that fails on its first attempt (and succeeds on its second) is pushed
    job_id = client.push("default", "testtasks:step", args=[1])
    settled(client, job_id, "done")
    # Then the hook ran before each attempt, in the job's worker, with the job's info
    order = [json.loads(x) for x in listed(rdb, "test:order")]
    assert [(e["at"], e["job"]["attempts"] if e["at"] == "before" else e["attempt"]) for e in order] == [
        ("before", 1), ("run", 1), ("before", 2), ("run", 2)]
    before = order[0]
    assert before["job"]["id"] == job_id and before["ctx_id"] == job_id
    assert (before["job"]["task"], before["job"]["queue"], before["job"]["args"]) == ("testtasks:step", "default", [1])
    assert {e["pid"] for e in order} <= set(svc.worker_pids())
    assert len({e["pid"] for e in order}) == 1          # one worker: hook and job in the same process


# -- 2. class-based task
def test_a_class_based_task_runs_and_on_final_failure_its_own_hook_runs_not_the_queues(service, broker_url, rdb):
    # Given a queue with its own failure hook and 3 retries, and a Task subclass with 1 retry and an on_failure
    service({"defaults": {"retries": 3, "retry_delay": 0.05, "on_failure": "testtasks:queue_hook"}}).start()
    client = Client(broker_url)
    # When the class's job succeeds
    ok = client.push("default", "testtasks:Report", args=["ok"])
    # Then its run() ran in a worker and its result is kept
    assert settled(client, ok, "done")["result"] == "report ok"
    # When another of its jobs fails every time
    bad = client.push("default", "testtasks:Report", args=["bad"], kwargs={"fail": True})
    wait_for(lambda: hooked(rdb), 10, what="a failure hook")
    drained(client)                    # the hook job was enqueued with the failure: nothing else can come
    # Then it ran 1 + the class's 1 retry (not the queue's 3), and only the class's own hook ran, once
    assert listed(rdb, "test:attempts") == ["ok 1 Report", "bad 1 Report", "bad 2 Report"]
    [call] = hooked(rdb)
    assert call["by"] == "class"
    assert (call["job"]["id"], call["job"]["task"], call["job"]["args"], call["job"]["kwargs"]) == (
        bad, "testtasks:Report", ["bad"], {"fail": True})
    assert call["error"]["type"] == "error" and "ValueError: report bad failed" in call["error"]["message"]
    assert settled(client, bad, "failed")["error"]["type"] == "error"


# -- 3. task-level on_failure
@pytest.mark.parametrize("task", ["fail_hooked", "fail_hooked_by_name"])
def test_a_function_tasks_own_on_failure_runs_when_it_finally_fails(service, broker_url, rdb, task):
    # Given a queue with its own failure hook, and a task with on_failure= (a function, or its name)
    service({"defaults": {"retries": 3, "retry_delay": 0.05, "on_failure": "testtasks:queue_hook"}}).start()
    client = Client(broker_url)
    # When the task fails on every attempt
    job_id = client.push("default", f"testtasks:{task}", args=["kaput"])
    wait_for(lambda: hooked(rdb), 10, what="a failure hook")
    drained(client)
    # Then after its own 1 retry, the task's hook (not the queue's) ran once with the job and the error
    assert listed(rdb, "test:attempts") == ["1", "2"]
    [call] = hooked(rdb)
    assert call["by"] == "task"
    assert (call["job"]["id"], call["job"]["task"], call["job"]["attempts"]) == (job_id, f"testtasks:{task}", 2)
    assert (call["error"]["type"], call["error"]["message"], call["error"]["attempts"]) == (
        "error", "ValueError: kaput", 2)
    assert "ValueError: kaput" in call["error"]["traceback"]


# -- 4. the hook for timeout and crashed
@pytest.mark.parametrize("task,kind,attempts,by", [
    ("hang", "timeout", 1, "queue"),          # timeout 1 s, no retry on timeout
    ("hang_hooked", "timeout", 1, "task"),    # timeout 0.5 s, its own hook
    ("exit_hard", "crashed", 2, "queue"),     # os._exit every time; queue retries: 1
    ("exit_hooked", "crashed", 2, "task"),    # os._exit every time; its own retries: 1 and hook
])
def test_the_failure_hook_runs_for_timed_out_and_crashed_jobs_with_that_error_type(
        service, broker_url, rdb, task, kind, attempts, by):
    # Given a queue with a failure hook and 1 retry without delay
    service({"defaults": {"retries": 1, "retry_delay": 0, "on_failure": "testtasks:queue_hook"}}).start()
    client = Client(broker_url)
    # When a job times out (killed by the supervisor) or kills its worker on every attempt
    job_id = client.push("default", f"testtasks:{task}")
    wait_for(lambda: hooked(rdb), 10, what=f"the failure hook of a {kind} job")
    drained(client)
    # Then the job is failed as `kind` and the right hook ran once, told that type
    assert settled(client, job_id, "failed")["error"]["type"] == kind
    assert listed(rdb, "test:attempts") == [str(a) for a in range(1, attempts + 1)]
    [call] = hooked(rdb)
    assert call["by"] == by
    assert (call["job"]["id"], call["job"]["task"], call["job"]["attempts"]) == (job_id, f"testtasks:{task}", attempts)
    assert (call["error"]["type"], call["error"]["attempts"]) == (kind, attempts)


# -- 5. current_job()
@pytest.mark.parametrize("mode", ["grab", "dispatch"])
def test_current_job_reports_the_pushed_id_queue_task_attempt_and_worker_index(service, broker_url, rdb, mode):
    # Given a queue named `other` with 2 workers and 4 retries (the task's own 2 override them)
    svc = service({"queues": {"other": {"workers": 2, "mode": mode, "retries": 4, "retry_delay": 0}}}).start()
    client = Client(broker_url)
    # When slow-ish jobs are pushed at once, and one job that fails on its first attempt
    ids = [client.push("other", "testtasks:whoami", kwargs={"seconds": 0.3}) for _ in range(4)]
    retried = client.push("other", "testtasks:whoami", kwargs={"fail_times": 1})
    for job_id in ids + [retried]:
        settled(client, job_id, "done", queue="other")
    # Then each job saw its own id (as push returned it), the queue it was pushed to, its task name,
    # its attempt and max_attempts, and the index of the worker running it
    seen = [json.loads(x) for x in listed(rdb, "test:whoami")]
    by_id = {}
    for s in seen:
        by_id.setdefault(s["id"], []).append(s)
    assert sorted(by_id) == sorted(ids + [retried])
    assert all((s["queue"], s["task"], s["max_attempts"]) == ("other", "testtasks:whoami", 3) for s in seen)
    assert [s["attempt"] for s in by_id[retried]] == [1, 2]
    assert all([s["attempt"] for s in by_id[i]] == [1] for i in ids)
    # both workers ran some, each under one index of 0..workers-1, in a worker process of this service
    assert {s["worker_index"] for s in seen} == {0, 1}
    index_of_pid = {}
    for s in seen:
        assert index_of_pid.setdefault(s["pid"], s["worker_index"]) == s["worker_index"]
    assert set(index_of_pid) <= set(svc.worker_pids())
    # and the index is what the job returned, kept as its result
    assert client.broker.find("other", ids[0])["result"] == by_id[ids[0]][0]["worker_index"]


# -- 6. dispatch mode under failure
def test_in_dispatch_mode_a_job_that_kills_its_worker_fails_as_crashed_and_the_other_jobs_complete(
        service, broker_url, rdb):
    # Given a dispatch queue with 2 workers and 1 retry without delay
    service({"queues": {"default": {"workers": 2, "mode": "dispatch", "retries": 1, "retry_delay": 0}}}).start()
    client = Client(broker_url)
    # When a job that calls os._exit is pushed among 20 normal jobs
    client.push_many("default", ({"task": "testtasks:record", "args": [i]} for i in range(10)))
    poison = client.push("default", "testtasks:exit_hard")
    client.push_many("default", ({"task": "testtasks:record", "args": [i]} for i in range(10, 20)))
    # Then it is retried once and failed as crashed
    state = settled(client, poison, "failed")
    assert state["error"]["type"] == "crashed"
    assert listed(rdb, "test:attempts") == ["1", "2"]
    # and every other job ran once and was acknowledged
    wait_for(lambda: rdb.llen("test:runs") >= 20, 10, what="20 runs")
    assert sorted(int(r.split()[0]) for r in listed(rdb, "test:runs")) == list(range(20))
    counts = wait_for(lambda: (c := client.broker.counts("default"))["done_total"] == 20 and c, 10,
                      what="20 acks")
    assert (counts["ready"], counts["scheduled"], counts["running"], counts["failed"]) == (0, 0, 0, 1)


def test_in_dispatch_mode_a_job_past_its_timeout_is_killed_and_failed_as_timeout(service, broker_url, rdb):
    # Given a dispatch queue with 1 worker and 3 retries
    svc = service({"queues": {"default": {"workers": 1, "mode": "dispatch", "retries": 3}}}).start()
    client = Client(broker_url)
    first_worker = set(svc.worker_pids())
    # When a job that hangs past its 1 s timeout is pushed, then a normal job
    job_id = client.push("default", "testtasks:hang")
    after = client.push("default", "testtasks:record", args=["after"])
    # Then the hung job is failed as timeout, without a retry
    t0 = time.monotonic()
    state = settled(client, job_id, "failed")
    assert state["error"]["type"] == "timeout"
    assert time.monotonic() - t0 < 5
    assert listed(rdb, "test:attempts") == ["1"]
    # and its worker was replaced, and the next job runs
    settled(client, after, "done")
    assert [r.split()[0] for r in listed(rdb, "test:runs")] == ["after"]
    assert not first_worker & set(svc.worker_pids())


# -- 7. configuration check (the broker is never reached: one is enough)
@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_check_accepts_a_valid_config_with_exit_0(service, rdb):
    # Given a valid service file
    svc = service({"queues": {"default": {"workers": 2}, "reports": {"workers": 1, "mode": "dispatch"}}})
    # When it is checked
    r = cli("cli", "check", "--config", str(svc.config_path))
    # Then it is accepted, with a summary naming it
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{svc.config_path}: ok: service svc")
    assert "default (2 grab)" in r.stdout and "reports (1 dispatch)" in r.stdout


BAD_CONFIGS = [
    ({"queues": {"default": {"workers": "four"}}}, "queues.default.workers: expected an integer >= 1, got 'four'"),
    ({"queues": {"default": {"wrokers": 2}}}, "queues.default.wrokers: unknown key; did you mean 'workers'?"),
    ({"defaults": {"timeout": -1}}, "defaults.timeout: expected a number of seconds > 0, got -1"),
]


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
@pytest.mark.parametrize("config,problem", BAD_CONFIGS, ids=["bad-value", "unknown-key", "bad-default"])
def test_check_refuses_an_invalid_config_with_exit_78_and_one_line_naming_file_and_key(service, rdb, config, problem):
    # Given an invalid service file
    svc = service(config)
    # When it is checked
    r = cli("cli", "check", "--config", str(svc.config_path))
    # Then exit 78 with one line naming the file and the key path
    assert r.returncode == 78, (r.stdout, r.stderr)
    assert r.stderr.splitlines() == [f"mpqueue: svc.yaml: {problem}"]
    assert r.stdout == ""


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
@pytest.mark.parametrize("config,problem", BAD_CONFIGS[:2], ids=["bad-value", "unknown-key"])
def test_run_refuses_an_invalid_config_with_exit_78_before_starting_anything(service, rdb, config, problem):
    # Given an invalid service file
    svc = service(config)
    # When the service is run on it
    svc.start(wait_ready=False)
    code = svc.proc.wait(30)
    # Then it exits 78 with the same one line, starts no worker, and tells systemd why
    assert code == 78, svc.log()
    assert svc.log().splitlines() == [f"mpqueue: svc.yaml: {problem}"]
    status = wait_for(lambda: next((m for m in svc.read_messages() if "STATUS=" in m), None), 5,
                      what="STATUS= on the notify socket")
    assert problem in status and "ERRNO=22" in status and "READY=1" not in status


# -- 8. lost
def test_a_job_whose_lease_ends_with_its_dead_node_and_no_attempts_left_is_failed_as_lost(service, broker_url, rdb):
    # Given node A running a job with a 3 s lease (timeout 2 + grace 1), no retries, and a failure hook
    cfg = {"lease_grace": 1, "defaults": {"timeout": 2, "retries": 0, "on_failure": "testtasks:queue_hook"}}
    a = service(cfg, name="node-a").start()
    b = service(cfg, name="node-b")
    client = Client(broker_url)
    job_id = client.push("default", "testtasks:slow_first", args=["j"])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="job started on node A")
    started = time.monotonic()
    # When the whole of node A dies at once, and node B runs
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait()
    b.start()
    # Then, once the lease has ended, the job is failed as lost (not run again) and the hook is told so
    state = settled(client, job_id, "failed", timeout=15)
    assert time.monotonic() - started >= 2.5         # not before its lease ended
    assert state["error"]["type"] == "lost"
    assert rdb.llen("test:starts") == 1 and rdb.llen("test:runs") == 0
    call = wait_for(lambda: hooked(rdb), 10, what="the failure hook")[0]
    assert (call["job"]["id"], call["error"]["type"]) == (job_id, "lost")


# -- 9. mpqctl job on a running job
def test_mpqctl_job_shows_a_running_job_as_running_with_its_worker(service, broker_url, rdb):
    # Given a job running in a worker (it waits until the test releases it)
    svc = service().start()
    client = Client(broker_url)
    job_id = client.push("default", "testtasks:hold", args=["x"])
    tag, pid = wait_for(lambda: listed(rdb, "test:starts"), 10, what="job started")[0].split()
    # When mpqctl is asked about it
    r = cli("ctl", "--broker", broker_url, "job", job_id, "--json")
    # Then it shows it running, held by that worker
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["id"], info["queue"], info["state"], info["task"], info["args"]) == (
        job_id, "default", "running", "testtasks:hold", ["x"])
    assert info["attempts"] == 1
    assert info["consumer"].rsplit("/", 1)[1] == pid and int(pid) in svc.worker_pids()
    r = cli("ctl", "--broker", broker_url, "job", job_id)
    assert r.returncode == 0 and "state: running" in r.stdout.splitlines(), r.stdout
    # And once it is released it shows done
    rdb.rpush("test:release:x", "go")
    settled(client, job_id, "done")
    assert json.loads(cli("ctl", "--broker", broker_url, "job", job_id, "--json").stdout)["state"] == "done"


# -- 10. junk in a Redis list
@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_junk_lpushed_into_a_redis_queue_goes_to_the_failed_store_and_the_worker_survives(service, broker_url, rdb):
    # Given a running service with 2 workers and a failure hook
    svc = service({"defaults": {"on_failure": "testtasks:queue_hook"}}).start()
    client = Client(broker_url)
    workers = set(svc.worker_pids())
    # When junk is put into the queue's list by a foreign writer
    junk = ["this is not a job", "", 'x1 0 0 {"a": []}', "zz 3 12 {}", "\x00 a NUL, \u00ff non-ASCII"]
    rdb.lpush("mpq:{default}:ready:0", *junk)
    # (nothing woke the workers: the next push does)
    client.push("default", "testtasks:record", args=["first"])
    # Then each piece of junk lands in the failed store as bad_payload
    wait_for(lambda: client.broker.counts("default")["failed"] == len(junk), 10, what="junk in the failed store")
    failed = client.broker.failed("default")
    assert sorted(json.loads(err)["type"] for _, _, err in failed) == ["bad_payload"] * len(junk)
    assert all("not a job envelope" in json.loads(err)["message"] for _, _, err in failed)
    # (what has no envelope header is kept whole under a made-up id; the one with a header keeps its id)
    by_id = {job_id: envelope for job_id, envelope, _ in failed}
    assert by_id.pop("x1") == 'x1 1 0 {"a": []}'
    assert sorted(e.split(" ", 3)[3] for e in by_id.values()) == sorted(j for j in junk if not j.startswith("x1"))
    assert all(job_id.startswith("bad-") for job_id in by_id)
    # and the queue's failure hook is told of each
    wait_for(lambda: len(hooked(rdb)) == len(junk), 10, what="a hook call per piece of junk")
    assert [c["error"]["type"] for c in hooked(rdb)] == ["bad_payload"] * len(junk)
    # and the workers survive and keep running jobs pushed afterwards
    wait_for(lambda: listed(rdb, "test:runs") and True, 10, what="the first job")
    ids = [client.push("default", "testtasks:record", args=[f"after{i}"]) for i in range(5)]
    for job_id in ids:
        settled(client, job_id, "done")
    assert sorted(r.split()[0] for r in listed(rdb, "test:runs")) == ["after0", "after1", "after2", "after3",
                                                                       "after4", "first"]
    assert set(svc.worker_pids()) == workers
    counts = drained(client)
    assert counts["failed"] == len(junk)


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_junk_that_is_not_utf8_goes_to_the_failed_store_and_the_service_survives(service, broker_url, rdb,
                                                                                  redis_server):
    import redis
    # Given a running service with 2 workers
    svc = service().start()
    client = Client(broker_url)
    workers = set(svc.worker_pids())
    raw = redis.Redis(host="127.0.0.1", port=redis_server.port)     # bytes in, bytes out
    # When bytes that are not UTF-8 are put into the queue's list by a foreign writer, then a job is pushed
    raw.lpush("mpq:{default}:ready:0", b"\xff\xfe not utf-8")
    first = client.push("default", "testtasks:record", args=["first"])
    # Then the junk lands in the failed store as bad_payload, and the service lives on
    wait_for(lambda: client.broker.counts("default")["failed"] == 1 or svc.proc.poll() is not None, 10,
             what="the junk failed (or the service gone)")
    assert svc.proc.poll() is None, f"the service exited ({svc.proc.returncode}):\n{svc.log()[-3000:]}"
    [(job_id, record)] = raw.hgetall("mpq:{default}:failed").items()
    assert json.loads(record.rpartition(b"\n")[2])["type"] == "bad_payload"
    # and its workers keep running jobs
    settled(client, first, "done")
    after = client.push("default", "testtasks:record", args=["after"])
    settled(client, after, "done")
    assert set(svc.worker_pids()) == workers


def test_process_titles_name_the_service_and_each_workers_role(service):
    # Given a running service with setproctitle installed (the test extra has it)
    pytest.importorskip("setproctitle")
    svc = service({"queues": {"default": {"workers": 2}}}).start()

    def title(pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    # Then ps shows what each process is
    assert title(svc.proc.pid) == "mpqueue svc: supervisor"
    workers = wait_for(lambda: len(p := svc.worker_pids()) == 2 and p, 10, what="2 workers")
    assert sorted(title(p) for p in workers) == ["mpqueue svc: default worker 0", "mpqueue svc: default worker 1"]


def test_json_logs_carry_the_job_fields_for_log_shippers(service, broker_url):
    # Given a service logging JSON
    svc = service({"log": {"level": "info", "format": "json"}, "defaults": {"retries": 0}}).start()
    # When a job fails
    job_id = Client(broker_url).push("default", "testtasks:fail", args=["nope"])
    line = wait_for(lambda: next((rec for rec in map(_json_or_none, svc.log().splitlines())
                                  if rec and rec.get("job_id") == job_id), None), 10, what="the job's log line")
    # Then its one JSON object names the service, queue, job, task, attempt, duration and outcome
    assert line["service"] == "svc" and line["queue"] == "default" and line["task"] == "testtasks:fail"
    assert line["attempt"] == 1 and line["outcome"] == "failed" and isinstance(line["duration_ms"], float)
    assert line["level"] == "error"


def _json_or_none(text):
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)     # boot back-off is the supervisor's own
def test_a_worker_that_cannot_boot_after_start_retries_with_backoff_while_the_others_serve(service, broker_url, rdb):
    # Given a running service of two queues, one worker each
    svc = service({"queues": {"default": {"workers": 1}, "other": {"workers": 1}}}).start()
    code = svc.tmp / "code" / "testtasks.py"
    good = code.read_text()
    pids = set(svc.worker_pids())
    # When a broken deploy lands and one worker dies: its replacement can't import the code
    code.write_text("raise ImportError('broken deploy')\n")
    victim = pids.pop()
    os.kill(victim, signal.SIGKILL)
    # Then it is retried with growing delays (no fork loop), STATUS says why,
    # and the other queue's worker, still on the old code, keeps serving
    wait_for(lambda: svc.log().count("; retrying in ") >= 3, 15, what="three boot failures")
    delays = [float(line.rsplit("; retrying in ", 1)[1].split()[0])
              for line in svc.log().splitlines() if "; retrying in " in line]
    assert delays[:3] == [0.5, 1.0, 2.0], delays
    assert any("STATUS=queue " in m and "broken deploy" in m for m in svc.read_messages())
    assert svc.proc.poll() is None
    survivor = pids.pop()
    with open(f"/proc/{survivor}/cmdline") as f:
        its_queue = "default" if "default worker" in f.read() else "other"
    job = Client(broker_url).push(its_queue, "testtasks:record", args=["served"])
    settled(Client(broker_url), job, "done", queue=its_queue)
    # And once the code is fixed, the next retry boots and the service is whole again
    code.write_text(good)
    wait_for(lambda: len(svc.worker_pids()) == 2 and "STATUS=2/2 workers" in " ".join(svc.read_messages()[-3:]),
             20, what="both workers up again")
