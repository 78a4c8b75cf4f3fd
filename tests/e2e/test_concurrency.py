"""`concurrency`: many jobs at once in one worker process, async tasks on its
event loop and plain ones in threads, with the delivery contract of one job at
a time: real `mpqueue run`, real workers, both brokers."""
from __future__ import annotations

import os
import signal

import pytest

from tests.support import TASKS, wait_for

CONCURRENT = TASKS + '''
import asyncio
import threading

def _start(tag):
    r().rpush("test:starts", f"{tag} {os.getpid()} {mpqueue.current_job().attempt}")

@mpqueue.task(queue="default")
async def asleep(tag, seconds):
    job = mpqueue.current_job()
    _start(tag)
    await asyncio.sleep(seconds)
    same = mpqueue.current_job() is job       # its own context, whatever ran meanwhile
    r().rpush("test:runs", f"{tag} {job.id} {job.attempt} {os.getpid()} {same}")
    return tag

@mpqueue.task(queue="default")
def tsleep(tag, seconds):
    job = mpqueue.current_job()
    _start(tag)
    time.sleep(seconds)
    same = mpqueue.current_job() is job
    r().rpush("test:runs", f"{tag} {job.id} {job.attempt} {os.getpid()} {same} {threading.current_thread().name}")
    return tag

@mpqueue.task(queue="default", timeout=1)
async def cancelled(tag):
    _start(tag)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        r().rpush("test:cancelled", tag)
        raise

@mpqueue.task(queue="default", timeout=1)
def overrun(tag):
    _start(tag)
    time.sleep(60)  # ok: the job overruns on purpose (a thread that cannot be interrupted)

@mpqueue.task(queue="default", timeout=60)
async def blocks_loop(tag):
    _start(tag)
    time.sleep(60)  # ok: an async def that blocks its loop, on purpose

@mpqueue.task(queue="default")
async def waits_for_flag_gone(tag):
    _start(tag)
    while r().get("test:hang"):
        await asyncio.sleep(0.05)

@mpqueue.task(queue="default")
async def hangs_while_flagged(tag):
    _start(tag)
    if r().get("test:hang"):
        await asyncio.sleep(60)
    r().rpush("test:runs", f"{tag} {mpqueue.current_job().attempt}")
'''


pytestmark = pytest.mark.each_broker


def conc(concurrency=8, workers=1, **queue):
    return {"queues": {"default": {"workers": workers, "concurrency": concurrency, "retry_delay": 0, **queue}}}


def starts(rdb):
    return [line.split() for line in rdb.lrange("test:starts", 0, -1)]


def runs(rdb):
    return [line.split() for line in rdb.lrange("test:runs", 0, -1)]


def final(client, job_id, timeout=20.0):
    return wait_for(lambda: (s := client.broker.find("default", job_id)) and s["state"] in ("done", "failed") and s,
                    timeout, what=f"job {job_id} done or failed")


@pytest.mark.parametrize("task", ["asleep", "tsleep"])
def test_jobs_of_one_worker_interleave_each_with_its_own_current_job(service, client, rdb, task):
    service(conc(8), tasks=CONCURRENT).start()
    ids = [client.push("default", f"testtasks:{task}", args=[f"j{i}", 1.0]) for i in range(8)]
    for job_id in ids:
        assert final(client, job_id)["state"] == "done"
    events = rdb.lrange("test:starts", 0, -1)
    assert len(events) == 8 and len({e.split()[1] for e in events}) == 1      # one worker process ran all 8
    done = runs(rdb)
    assert sorted(d[1] for d in done) == sorted(ids)
    assert all(d[4] == "True" for d in done)                                  # current_job() was each job's own
    if task == "tsleep":
        assert len({d[5] for d in done}) == 8                                 # eight threads


def test_async_and_thread_jobs_share_one_worker_at_once(service, client, rdb):
    svc = service(conc(4), tasks=CONCURRENT).start()
    ids = [client.push("default", "testtasks:asleep", args=["a1", 3.5]),
           client.push("default", "testtasks:tsleep", args=["t1", 3.5]),
           client.push("default", "testtasks:asleep", args=["a2", 3.5]),
           client.push("default", "testtasks:tsleep", args=["t2", 3.5])]
    wait_for(lambda: rdb.llen("test:starts") == 4, 10, what="four jobs started")
    assert rdb.llen("test:runs") == 0               # every one started before any ended
    svc.wait_message("1/1 workers, 4/1x4 busy", 3)   # STATUS= shows the busy slots
    for job_id in ids:
        assert final(client, job_id)["state"] == "done"


def test_an_async_job_past_its_timeout_is_cancelled_and_its_siblings_run_on(service, client, rdb):
    svc = service(conc(4), tasks=CONCURRENT).start()
    pids = svc.worker_pids()
    sibling = client.push("default", "testtasks:asleep", args=["sib", 2.5])
    victim = client.push("default", "testtasks:cancelled", args=["v"])
    found = final(client, victim)
    assert (found["state"], found["error"]["type"]) == ("failed", "timeout")
    assert rdb.lrange("test:cancelled", 0, -1) == ["v"]          # CancelledError was raised in it
    assert final(client, sibling)["state"] == "done"
    assert runs(rdb)[0][2] == "1"                                # the sibling ran once, undisturbed
    assert svc.worker_pids() == pids                             # and the worker lives on


def _siblings_handed_back(svc, client, rdb, victim_task):
    pid = svc.worker_pids()[0]
    siblings = [client.push("default", "testtasks:tsleep", args=[f"s{i}", 4]) for i in range(2)]
    wait_for(lambda: rdb.llen("test:starts") == 2, 10, what="siblings started")
    victim = client.push("default", f"testtasks:{victim_task}", args=["v"])
    found = final(client, victim)
    assert (found["state"], found["error"]["type"]) == ("failed", "timeout")
    wait_for(lambda: svc.worker_pids() and svc.worker_pids()[0] != pid, 10, what="the worker replaced")
    for job_id in siblings:
        assert final(client, job_id)["state"] == "done"
    first = {s[0] for s in starts(rdb) if s[1] == str(pid)}
    assert first == {"s0", "s1", "v"}
    # interrupted by the kill, run again by the new worker: their attempt was not spent
    assert sorted((d[0], d[2]) for d in runs(rdb)) == [("s0", "1"), ("s1", "1")]
    assert "go back unspent" in svc.log()


def test_a_thread_job_that_overruns_gets_its_worker_killed_and_its_siblings_back_unspent(service, client, rdb):
    svc = service(conc(4), tasks=CONCURRENT).start()
    _siblings_handed_back(svc, client, rdb, "overrun")


def test_an_async_job_that_blocks_the_loop_is_the_one_failed_and_its_siblings_go_back_unspent(service, client, rdb):
    svc = service(conc(4, timeout=2), tasks=CONCURRENT).start()
    pid = svc.worker_pids()[0]
    sibling = client.push("default", "testtasks:asleep", args=["sib", 1.5])      # the queue's 2 s timeout
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="sibling started")
    blocker = client.push("default", "testtasks:blocks_loop", args=["b"])         # its own 60 s timeout
    found = final(client, blocker)
    # the loop stood still for longer than the sibling's timeout: the job blocking it is the one failed
    assert (found["state"], found["error"]["type"]) == ("failed", "timeout")
    assert "blocked the event loop" in svc.log()
    assert final(client, sibling)["state"] == "done"
    assert [s[2] for s in starts(rdb) if s[0] == "sib"] == ["1", "1"]          # stalled, not spent: run again
    assert pid not in svc.worker_pids()


def test_sigkill_of_a_worker_with_running_jobs_spends_exactly_their_attempts(service, client, rdb):
    svc = service(conc(4), tasks=CONCURRENT).start()
    pid = svc.worker_pids()[0]
    rdb.set("test:hang", 1)
    running = [client.push("default", "testtasks:hangs_while_flagged", args=[f"r{i}"]) for i in range(4)]
    wait_for(lambda: rdb.llen("test:starts") == 4, 10, what="four jobs running")
    waiting = [client.push("default", "testtasks:hangs_while_flagged", args=[f"w{i}"]) for i in range(2)]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid not in svc.worker_pids(), 10, what="the killed worker reaped")
    rdb.delete("test:hang")                    # only now: a job that saw it gone before the kill would finish
    for job_id in running + waiting:
        assert final(client, job_id)["state"] == "done"
    # each running job spent the attempt the crash took; the two that waited for a slot never started there
    assert sorted(tuple(d) for d in runs(rdb)) == [("r0", "2"), ("r1", "2"), ("r2", "2"), ("r3", "2"),
                                                  ("w0", "1"), ("w1", "1")]
    assert sorted(s[0] for s in starts(rdb) if s[1] == str(pid)) == ["r0", "r1", "r2", "r3"]


def test_a_reload_with_jobs_in_flight_interrupts_none(service, client, rdb):
    svc = service(conc(4), tasks=CONCURRENT).start()
    ids = [client.push("default", "testtasks:asleep", args=[f"j{i}", 2]) for i in range(4)]
    wait_for(lambda: rdb.llen("test:starts") == 4, 10, what="four jobs running")
    svc.signal(signal.SIGHUP)
    wait_for(lambda: "reload complete" in svc.log(), 15, what="the reload done")
    for job_id in ids:
        assert final(client, job_id)["state"] == "done"
    assert sorted(d[2] for d in runs(rdb)) == ["1"] * 4          # none interrupted, none run twice
    assert rdb.llen("test:starts") == 4


def test_a_graceful_stop_waits_for_every_running_job(service, client, rdb):
    svc = service(conc(4), tasks=CONCURRENT).start()
    ids = [client.push("default", "testtasks:tsleep", args=[f"j{i}", 1.5]) for i in range(4)]
    wait_for(lambda: rdb.llen("test:starts") == 4, 10, what="four jobs running")
    assert svc.stop() == 0
    assert [client.broker.find("default", i)["state"] for i in ids] == ["done"] * 4


def test_max_jobs_recycles_a_worker_once_its_running_jobs_are_done(service, client, rdb):
    svc = service(conc(4, max_jobs=4), tasks=CONCURRENT).start()
    pid = svc.worker_pids()[0]
    ids = [client.push("default", "testtasks:asleep", args=[f"j{i}", 0.5]) for i in range(10)]
    for job_id in ids:
        assert final(client, job_id)["state"] == "done"
    per_pid = {}
    for s in starts(rdb):
        per_pid[s[1]] = per_pid.get(s[1], 0) + 1
    assert per_pid[str(pid)] == 4 and max(per_pid.values()) <= 4
    assert sorted(d[2] for d in runs(rdb)) == ["1"] * 10          # recycling cut no job short


def test_dispatch_mode_hands_a_worker_as_many_jobs_as_it_has_free_slots(service, client, rdb):
    svc = service(conc(3, workers=2, mode="dispatch"), tasks=CONCURRENT).start()
    ids = [client.push("default", "testtasks:asleep", args=[f"j{i}", 1.5]) for i in range(6)]
    wait_for(lambda: rdb.llen("test:starts") == 6, 10, what="six jobs running at once")
    assert rdb.llen("test:runs") == 0
    assert len({s[1] for s in starts(rdb)}) == 2                 # three on each worker
    for job_id in ids:
        assert final(client, job_id)["state"] == "done"
    svc.stop()


HOOKS = CONCURRENT + '''
_boot_loop = None

async def start_hook(ctx):
    global _boot_loop
    _boot_loop = asyncio.get_running_loop()
    r().rpush("test:hooks", f"start {ctx['worker_index']}")

async def before(job):
    await asyncio.sleep(0)
    r().rpush("test:hooks", f"before {job['task']}")

async def failure_hook(job, error):
    await asyncio.sleep(0)
    r().rpush("test:hooks", f"failed {job['id']} {error['type']}")

@mpqueue.task(queue="default", retries=0)
async def same_loop():
    return asyncio.get_running_loop() is _boot_loop

@mpqueue.task(queue="default", retries=0)
async def broken():
    await asyncio.sleep(0)
    raise ValueError("async boom")

@mpqueue.task(queue="default")
async def spawns(tag):
    asyncio.get_running_loop().create_task(asyncio.sleep(30))      # left running: it holds no slot
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    return tag

@mpqueue.task(queue="default")
def pushes_from_a_thread(tag):
    return testtasks_push(tag)

def testtasks_push(tag):
    return record.push(tag)

class AsyncReport(mpqueue.Task):
    queue = "default"
    async def run(self, tag):
        await asyncio.sleep(0.01)
        return f"{tag} on the loop: {asyncio.get_running_loop() is not None}"
'''


@pytest.mark.parametrize("concurrency", [1, 4])
def test_hooks_may_be_coroutines_and_run_on_the_jobs_loop(service, client, rdb, concurrency):
    service(conc(concurrency, on_worker_start="testtasks:start_hook", before_job="testtasks:before",
                 on_failure="testtasks:failure_hook"), tasks=HOOKS).start()
    ok = client.push("default", "testtasks:same_loop")
    assert final(client, ok)["state"] == "done"
    assert client.broker.find("default", ok)["result"] is True    # awaited, on the loop the start hook ran on
    bad = client.push("default", "testtasks:broken")
    found = final(client, bad)
    assert (found["state"], found["error"]["type"]) == ("failed", "error")
    assert "ValueError: async boom" in found["error"]["message"]
    wait_for(lambda: f"failed {bad} error" in rdb.lrange("test:hooks", 0, -1), 10, what="the async failure hook")
    hooks = rdb.lrange("test:hooks", 0, -1)
    assert hooks[0] == "start 0" and "before testtasks:same_loop" in hooks and "before testtasks:broken" in hooks


def test_an_async_task_with_one_slot_is_awaited_and_cancelled_at_its_timeout(service, client, rdb):
    svc = service(conc(1), tasks=CONCURRENT).start()
    pids = svc.worker_pids()
    ok = client.push("default", "testtasks:asleep", args=["a", 0.1])
    assert final(client, ok)["result"] == "a"                 # its value, not a coroutine's repr
    victim = client.push("default", "testtasks:cancelled", args=["v"])
    found = final(client, victim)
    assert (found["state"], found["error"]["type"]) == ("failed", "timeout")
    assert rdb.lrange("test:cancelled", 0, -1) == ["v"]
    assert svc.worker_pids() == pids


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_task_class_with_an_async_run_is_awaited(service, client, concurrency):
    service(conc(concurrency), tasks=HOOKS).start()
    job_id = client.push("default", "testtasks:AsyncReport", args=["r"])
    assert final(client, job_id)["result"] == "r on the loop: True"


def test_a_job_that_leaves_tasks_or_threads_running_keeps_no_slot(service, client, rdb):
    service(conc(2), tasks=HOOKS).start()
    assert final(client, client.push("default", "testtasks:spawns", args=["x"]))["state"] == "done"
    pair = [client.push("default", "testtasks:asleep", args=[f"p{i}", 1.0]) for i in range(2)]
    wait_for(lambda: rdb.llen("test:starts") == 2, 10, what="both slots free again")
    assert rdb.llen("test:runs") == 0                          # the two ran at once
    for job_id in pair:
        assert final(client, job_id)["state"] == "done"


def test_a_plain_task_in_a_thread_pushes_through_the_workers_broker(service, client, rdb):
    service(conc(4), tasks=HOOKS).start()
    parent = client.push("default", "testtasks:pushes_from_a_thread", args=["child"])
    child = final(client, parent)["result"]
    assert final(client, child)["state"] == "done"
    assert rdb.lrange("test:runs", 0, -1)[0].startswith(f"child {child} 1")


def test_mpqctl_shows_busy_slots_and_a_running_jobs_worker_and_slot(service, client, rdb, broker_url):
    import json
    import subprocess
    import sys
    svc = service(conc(4), tasks=CONCURRENT).start()
    rdb.set("test:hang", 1)
    ids = [client.push("default", "testtasks:waits_for_flag_gone", args=[f"j{i}"]) for i in range(2)]
    wait_for(lambda: rdb.llen("test:starts") == 2, 10, what="two jobs running")

    def ctl(*args):
        out = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--broker", broker_url, *args, "--json"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def listed():        # the node's next heartbeat (every 15 s) lists what its workers run
        info = ctl("job", ids[1])
        return info.get("slot") is not None and info
    info = wait_for(listed, 25, interval=0.5, what="the heartbeat listing the running job")
    assert info["worker"] == "default/0" and info["pid"] == svc.worker_pids()[0] and info["slot"] in (0, 1)
    first = ctl("job", ids[0])
    assert {first["slot"], info["slot"]} == {0, 1}
    node, = ctl("status")["nodes"]
    assert (node["queues"]["default"]["slots"], node["queues"]["default"]["busy_slots"]) == (4, 2)
    rdb.delete("test:hang")


TOGETHER = TASKS + '''
import threading

_lock, _started, _all_in = threading.Lock(), [0], threading.Event()

@mpqueue.task(queue="default", timeout=300)
def push_together(n):
    # Every job waits until all n run at once, then all push in the same instant:
    # as many pool connections wanted at once as the worker has slots.
    with _lock:
        _started[0] += 1
        if _started[0] >= n:
            _all_in.set()
    _all_in.wait(240)
    return noop.push()
'''


def test_a_worker_with_1000_slots_whose_jobs_all_push_at_once_loses_and_crashes_none(service, client, rdb):
    # Given a worker with concurrency 1000 (one thread, and possibly one broker
    # connection, per running job: the open-file limit is raised for it where the
    # hard limit allows) whose 1,000 jobs run together and then all push at once
    import resource
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if want < 2 * n + 200:
        pytest.skip(f"the hard limit on open files here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        svc = service(conc(n), tasks=TOGETHER).start()       # the service inherits the raised limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    pids = svc.worker_pids()
    parents = client.push_many("default", [{"task": "testtasks:push_together", "args": [n]}] * n)
    # When they have all ended
    ended = {}
    for job_id in parents:
        ended[job_id] = final(client, job_id, timeout=240)
    # Then every one is done (none failed as crashed, none lost), each child it
    # pushed is done too, and the worker never exited
    assert {f["state"] for f in ended.values()} == {"done"}
    assert all(f.get("attempts", 1) == 1 for f in ended.values())
    for f in ended.values():
        assert final(client, f["result"], timeout=120)["state"] == "done"
    assert svc.worker_pids() == pids
