"""mpqueue: a real `mpqueue run` (supervisor + `workers: 2`), from the project's
own interpreter, on any broker URL (the private Redis by default), or on a
Sentinel group or a Cluster the bench starts (systems/deployments.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .base import System

MODULE = '''
import itertools

import mpqueue

client = mpqueue.Client(BROKER)
# The queues to push to, round robin (several on the Cluster row: one per master)
QUEUES = os.environ.get("BENCH_QUEUES", "bench").split(",")
_next_queue = itertools.cycle(QUEUES).__next__


@mpqueue.task(queue="bench")
def noop(*args):
    _noop(*args)


@mpqueue.task(queue="bench")
def stamp(pushed_at, due_at=0):
    _stamp(pushed_at, due_at)


@mpqueue.task(queue="bench")
def io(ms=2):
    _io(ms)


@mpqueue.task(queue="bench")
def victim(i):
    _victim(i)


@mpqueue.task(queue="bench")
def tick():
    # the ticks workload: this job's start and its schedule tick, both epoch seconds
    started = time.time()
    R.rpush("ticks", f"{started} {mpqueue.current_job().scheduled_for.timestamp()}")


@mpqueue.task(queue="bench")
def answer(wait=0.02):
    # the result workload: wait, so the caller is in result() when the job ends, and
    # return the clock as the last act (the result carries it to the caller)
    time.sleep(wait)
    return time.time()


def _results(n):
    # the result workload's caller: push, wait in result(), ms from the task's return to result()'s
    import json
    if not hasattr(client, "result"):
        print("null")
        return
    ms = []
    for _ in range(n):
        job = client.push(QUEUES[0], "benchpeer:answer", args=[0.02])
        returned = client.result(job, timeout=30, queue=QUEUES[0])
        ms.append((time.time() - returned) * 1000)
    print(json.dumps(ms))


def send(task, args):
    client.push(_next_queue(), "benchpeer:" + task, args=list(args))


def send_later(task, args, delay):
    client.push(_next_queue(), "benchpeer:" + task, args=list(args), delay=delay)


def bulk(task, argss):
    # the same round robin as send(): every len(QUEUES)-th job to each queue, one push_many per queue
    for i, queue in enumerate(QUEUES):
        client.push_many(queue, ({"task": "benchpeer:" + task, "args": list(a)} for a in argss[i::len(QUEUES)]))
'''

# The io50 task of the two concurrency variants: an `async def` (run on the
# worker's asyncio loop) or a plain `def` (run in the queue's thread pool).
IO50 = {
    "async": '''

@mpqueue.task(queue="bench")
async def io50():
    await _io50_async()
''',
    "threads": '''

@mpqueue.task(queue="bench")
def io50():
    _io50()
''',
}

# Footnotes of the rows beyond one Redis.
NOTES = {
    "sentinel": "Sentinel rows: a master, 1 replica and 3 sentinels (tests/redis_deployments.py's SentinelGroup) "
                "on loopback ports of this machine, started once by the bench for every Sentinel row, with "
                "Sentinel's default down-after-milliseconds (30 s, not the tests' 1 s); mpqueue asks the "
                "sentinels for the master. The jobs record into the private server's db 1, as everywhere.",
    "cluster": "Cluster rows: 3 masters with 1 replica each (tests/redis_deployments.py's ClusterNodes), "
               "cluster-node-timeout 15 s (the default, not the tests' 1 s), started once by the bench for "
               "every Cluster row. Every master, replica, worker and the producer share this machine's cores.",
    "layout": "3 queues × 1 worker: three queues (on the Cluster, names chosen so each lives on a different "
              "master), `workers: 1` each, the jobs pushed round robin (bulk: every third job to each queue). "
              "That is 3 job-running processes, not the 2 of the other rows: a queue has at least 1 worker. "
              "`mpqueue-3q` is the same layout on the single Redis: compare the Cluster with it.",
    "durable": "Durable rows: `?wait_replicas=1&wait_timeout=1`: every push (every chunk of 1,000 in push_many) "
               "is followed by `WAIT 1 1000` on the same connection, and returns once the replica has it. "
               "Workers never WAIT: their drain is the plain row's, only the fill before it pays.",
}


class Mpqueue(System):
    name = column = "mpqueue"
    has_bulk = True
    has_schedules = has_results = True
    recovery_s = 3.0          # a crashed job is retried after retry_delay (default 3 s)
    MODULE = MODULE

    def __init__(self, redis, broker: str | None = None, mode: str = "grab", name: str | None = None,
                 variant: str | None = None, workloads=None, concurrency: int | None = None,
                 io50: str | None = None, deployment: str | None = None, query: str = "", queues: int = 1,
                 versus: tuple = (), rate: str | None = None):
        """broker: any mpqueue broker URL; `{tmp}` in it is this system's temporary
        directory (e.g. "sqlite:///{tmp}/queue.db"). Jobs record into Redis db 1 either way.
        concurrency: the queue's `concurrency` key (None: not set, the default 1);
        io50: "async" or "threads", the kind of io50 task the module defines.
        deployment: "sentinel" or "cluster": the broker is that deployment
        (systems/deployments.py, shared by the rows naming it), `query` appended to its URL.
        queues: 1 (`bench`, `workers: 2`) or more, `workers: 1` each, pushed to round robin;
        on the Cluster each on a different master.
        versus: the rows of the same run this one is compared with (median over median).
        rate: the queue's `rate` limit (core/limits.py), None: none."""
        self.mode = mode
        if io50:
            self.MODULE = MODULE + IO50[io50]
            self.probe_kind = "io50"
        self.name = name or self.name
        self.variant = variant
        self.workloads = workloads
        self.versus = versus
        self.deployment = None
        tmp = None
        if broker and "{tmp}" in broker:
            import tempfile
            tmp = tempfile.mkdtemp(prefix="bench-mpqueue-broker-")
            broker = broker.replace("{tmp}", tmp)
        try:
            if deployment:
                from . import deployments
                self.deployment = deployments.get(deployment)
                broker = self.deployment.url(query)
            if queues == 1:
                self.queues, per_queue = ["bench"], self.workers
            else:
                # 3 queues of `workers: 1` (the fewest a queue may have): 3 job-running
                # processes, one more than the 2 of every other row (see bench/README.md)
                self.queues = (self.deployment.queue_names(queues) if deployment == "cluster"
                               else [f"bench{i}" for i in range(queues)])
                per_queue = 1
                self.workers = queues * per_queue
            # The Redis-only figures (bytes per job, commands/s) read the private server:
            # they mean something only when it is the broker.
            self.uses_redis_broker = broker is None or (broker.startswith(("redis", "unix")) and not deployment)
            super().__init__(redis, Path(sys.executable).parent, broker)
        except BaseException:       # a deployment started for a row that never ran: stop it here
            if self.deployment:
                from . import deployments
                deployments.stop_all()
            raise
        self.broker_dir = tmp
        self.env["BENCH_QUEUES"] = ",".join(self.queues)
        self.notes = tuple(NOTES[k] for k in (deployment, "layout" if queues > 1 else None,
                                               "durable" if "wait_replicas" in query else None) if k)
        queue = {"workers": per_queue, "mode": mode}
        if concurrency is not None:
            queue["concurrency"] = concurrency
        if rate is not None:
            queue["rate"] = rate
        layout = (f"`workers: {per_queue}`" if queues == 1 else
                  f"{queues} queues of `workers: {per_queue}` ({self.workers} workers), pushed to round robin")
        self.settings = (f"`mpqueue run` with {layout}, `mode: {mode}`"
                         + (f", `concurrency: {concurrency}`" if concurrency is not None else "")
                         + (f", `rate: {rate}`" if rate is not None else "")
                         + (f", an `{'async def' if io50 == 'async' else 'def'}` io50 task" if io50 else "")
                         + ", `log: {level: warning}`, everything else default "
                         f"(retries 3, retry_delay 3 s); broker {self.broker.split('://')[0]}"
                         + (f" (`?{query}`)" if query else ""))
        self.config = self.dir / "bench.yaml"
        service = {
            "name": f"bench-{self.name}", "broker": self.broker, "path": [str(self.dir)], "imports": ["benchpeer"],
            "log": {"level": "warning"},   # the same quiet level as every system's: no line per job, warnings up
            "queues": {q: queue for q in self.queues}}
        self.config.write_text(yaml.safe_dump(service))
        # the ticks workload's service: the same with one schedule of `every: 1`
        self.ticks_config = self.dir / "bench-ticks.yaml"
        self.ticks_config.write_text(yaml.safe_dump(
            {**service, "schedules": {"bench-tick": {"task": "benchpeer:tick", "every": 1, "queue": self.queues[0]}}}))
        self.env["MPQUEUE_RUNTIME_DIR"] = str(self.dir / "run")

    def _version(self) -> str:
        import mpqueue
        return mpqueue.__version__

    def lacks(self, workload: str) -> str | None:
        import importlib.util

        import mpqueue
        if workload == "ticks" and importlib.util.find_spec("mpqueue.core.schedules") is None:
            return "n/a: this mpqueue has no schedules"
        if workload == "result" and not hasattr(mpqueue.Client, "result"):
            return "n/a: this mpqueue has no Client.result"
        return None

    def worker_commands(self, workload):
        config = self.ticks_config if workload == "ticks" else self.config
        return [[str(self.python), "-m", "mpqueue.ops.cli", "run", "--config", str(config)]]

    def result_waits(self, n: int) -> list[float] | None:
        """The result workload's caller, a producer process: ms from each job's return
        to its result() returning, or None when this mpqueue has no Client.result."""
        import json
        return json.loads(self._produce("results", n, timeout=n * 30 + 60))

    def reset(self) -> None:
        super().reset()
        if self.deployment:
            self.deployment.reset()
        if self.broker.startswith("sqlite:"):
            path = Path(self.broker.split("://", 1)[1].split("?", 1)[0])
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)

    def failed_count(self) -> int | None:
        from mpqueue.brokers import open_broker
        broker = open_broker(self.broker)
        try:
            return sum(int(broker.counts(q)["failed"]) for q in self.queues)
        finally:
            broker.close()

    def redis_cpu(self) -> dict:
        cpu = super().redis_cpu()
        if self.deployment:
            mine = self.deployment.cpu()
            cpu["all"] += mine["all"]
            cpu["per_master"] = mine["per_master"]
        return cpu

    def cleanup(self) -> None:
        super().cleanup()
        if self.deployment:         # shared with the other rows on it: all are done by now
            from . import deployments
            deployments.stop_all()
        if self.broker_dir:
            import shutil
            shutil.rmtree(self.broker_dir, ignore_errors=True)
