"""Model-based, randomized, with faults, against real `mpqueue run` processes:
random sequences of pushes (any priority, now or a little later) of tasks that
succeed, fail, retry, ask for an impossible retry, return junk or kill their own
worker, interleaved with SIGKILLs of a worker or of the whole supervisor (the
service is then started again) and, on Redis, broker restarts. When it has all
settled, every pushed job must be done or in the failed store, with a type that
says why, having run no more often than its attempts allow (plus one for each
kill that could have caught it between its work and its ack). Each scenario runs
with one job per worker and with `concurrency: 4` (plain tasks in threads, async
ones on the loop), where a crashing job also spends the attempts of the jobs
running beside it.

CI runs a small fixed corpus; before a release:
MPQ_PROPERTY_EXAMPLES=200 MPQ_PROPERTY_RANDOM=1 pytest tests/property."""
from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpqueue import Client
from tests.support import TASKS, RedisServer, Service, wait_for

RETRIES = 2
KINDS = ("ok", "error", "flaky", "bad_retry", "junk", "crash", "slow")
# What each kind must end as when no fault touched it: (state, failure type)
EXPECTED = {"ok": ("done", None), "flaky": ("done", None), "junk": ("done", None), "slow": ("done", None),
            "error": ("failed", "error"), "bad_retry": ("failed", "bad_result"), "crash": ("failed", "crashed")}
FAULT_TYPES = {"crashed", "lost"}

FAULT_TASKS = TASKS + '''

@mpqueue.task(queue="default")
def prop(tag, kind):
    j = mpqueue.current_job()
    r().rpush("prop:runs", tag)
    if kind == "error":
        raise ValueError("fails every time")
    if kind == "flaky" and j.attempt == 1:
        raise RuntimeError("fails once")
    if kind == "bad_retry":
        raise mpqueue.Retry(delay=float("inf"))
    if kind == "junk":
        return {"not", "json"}
    if kind == "crash":
        os._exit(1)
    if kind == "slow":
        time.sleep(0.2)  # ok: the task is slow on purpose
    return tag

import asyncio

@mpqueue.task(queue="default")
async def aprop(tag, kind):
    if kind == "slow":
        await asyncio.sleep(0.2)
        kind = "ok"
    await asyncio.sleep(0)
    return prop.func(tag, kind)
'''

push = st.tuples(st.just("push"), st.sampled_from(KINDS), st.integers(0, 9), st.sampled_from([0, 0, 0.3]),
                 st.sampled_from(["prop", "aprop"]))
fault = st.sampled_from([("kill_worker",), ("kill_supervisor",), ("restart_broker",), ("pause",)])
scenarios = st.lists(st.one_of(push, push, fault), min_size=4, max_size=12)
SETTINGS = settings(max_examples=int(os.environ.get("MPQ_PROPERTY_EXAMPLES", "3")), deadline=None,
                    derandomize=not os.environ.get("MPQ_PROPERTY_RANDOM"), suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def durable_broker():
    server = RedisServer(durable=True)
    yield server
    server.stop()


class Run:
    """One scenario: a fresh service on a fresh broker, and what was done to it."""

    def __init__(self, directory, broker_kind, durable, recorder, concurrency=1):
        self.durable, self.recorder = durable, recorder
        if broker_kind == "redis":
            durable.client.flushall()
            url = durable.url
        else:
            url = f"sqlite://{directory}/broker.db"
        self.svc = Service(directory, recorder.url, {"lease_grace": 1, "queues": {"default": {
            "workers": 2, "concurrency": concurrency, "timeout": 2, "retries": RETRIES, "retry_delay": 0}}},
            tasks=FAULT_TASKS, broker=url)
        self.concurrency = concurrency
        self.client = Client(url)
        self.kind, self.jobs, self.kills = broker_kind, {}, 0
        self.rng = random.Random(len(str(directory)))

    def start(self):
        self.svc.start()

    def apply(self, action):
        name = action[0]
        if name == "push":
            _, kind, prio, delay, task = action
            tag = f"j{len(self.jobs)}"
            job_id = self.client.push("default", f"testtasks:{task}", args=[tag, kind], priority=prio, delay=delay)
            self.jobs[job_id] = (tag, kind)
            if kind == "crash" and self.concurrency > 1:
                self.kills += RETRIES + 1     # each of its runs kills the jobs running beside it
        elif name == "kill_worker" and self.svc.worker_pids():
            os.kill(self.rng.choice(self.svc.worker_pids()), signal.SIGKILL)
            self.kills += 1
        elif name == "kill_supervisor":
            workers = self.svc.worker_pids()
            self.svc.signal(signal.SIGKILL)
            self.svc.proc.wait(10)
            wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in workers), 10, what="its workers to die")
            self.kills += len(workers)
            self.svc.start()
        elif name == "restart_broker" and self.kind == "redis":
            self.durable.halt()
            self.durable.start()
        time.sleep(0.05)  # ok: letting the service run between faults is the scenario, not a wait for a result

    def settled(self):
        for job_id in self.jobs:
            found = self.client.broker.find("default", job_id)
            if not found or found["state"] not in ("done", "failed"):
                return False
        return True

    def check(self):
        runs = Counter(self.recorder.client.lrange("prop:runs", 0, -1))
        for job_id, (tag, kind) in self.jobs.items():
            found = self.client.broker.find("default", job_id)
            state, failure = found["state"], (found.get("error") or {}).get("type")
            # It ran no more often than its attempts allow, plus the kills that could have repeated it
            assert runs[tag] <= RETRIES + 1 + self.kills, (tag, kind, runs[tag], self.kills)
            if state == "failed":
                assert found["error"].get("message"), found
            if self.kills and failure in FAULT_TYPES:
                continue          # a kill may end any job as crashed or lost (attempts spent by the faults)
            assert (state, failure) == EXPECTED[kind], (tag, kind, state, failure, found)

    def close(self):
        self.svc.stop()
        self.client.close()


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("broker_kind", ["redis", "sqlite"])
@SETTINGS
@given(scenario=scenarios)
def test_whatever_happens_every_job_ends_done_or_failed_for_a_reason(scenario, broker_kind, concurrency,
                                                                      tmp_path_factory, durable_broker, redis_server):
    directory = tmp_path_factory.mktemp("faults")
    redis_server.client.delete("prop:runs")
    run = Run(directory, broker_kind, durable_broker, redis_server, concurrency)
    try:
        run.start()
        for action in scenario:
            run.apply(action)
        if run.svc.proc.poll() is not None:
            run.svc.start()
        wait_for(run.settled, 90, interval=0.1, what="every job done or failed")
        run.check()
    finally:
        run.close()
