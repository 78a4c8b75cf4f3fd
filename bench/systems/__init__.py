"""The systems under benchmark: name -> factory(redis). Columns of the table are
the systems' `column`; a system with a `variant` adds rows to its column's
figures (mpqueue's dispatch mode, RQ's SimpleWorker, Celery's reliable mode, the
io50 configurations). `bare` and `floor` are reference columns, not queues (systems/bare.py,
systems/floor.py).

mpqueue on another broker is one more entry, e.g.
    # A rate limit far above the drain rate: what its bookkeeping costs (and a limited queue takes no job ahead).
    "mpqueue-rate": lambda r: Mpqueue(r, rate="100000/s", name="mpqueue-rate", versus=("mpqueue",),
                                      variant="`rate: 100000/s` (a limit above the drain rate)", workloads=("drain",)),
    "mpqueue-sqlite": lambda r: Mpqueue(r, broker="sqlite:///{tmp}/queue.db", name="mpqueue-sqlite",
                                        variant="SQLite broker", workloads=(...)),
(`{tmp}` is a fresh temporary directory; jobs still record into Redis db 1).

Sentinel and Cluster rows run on deployments the bench starts itself
(systems/deployments.py); the results db stays on the private server. The
Cluster row has 3 queues, one per master, of `workers: 1` each (3 workers:
a queue cannot have fewer than 1), and `mpqueue-3q` is the same layout on the
single Redis, so the broker is the only difference between the two.

The io50 configurations run 64 jobs at once in all, in 2 processes where the
system's own flags allow (Celery's thread and gevent pools and Huey's thread
workers run in one process: each is measured as the brief gave it, one process
with 64, and as 2 processes with 32 each). They run the io50 and memory
workloads only.
"""
from __future__ import annotations

from .arq import Arq
from .bare import Bare
from .celery import Celery
from .dramatiq import Dramatiq
from .floor import Floor
from .huey import Huey
from .mpqueue import Mpqueue
from .rq import Rq

IO50 = ("io50", "memory")
BEYOND = ("push", "drain", "latency")
DURABLE = "wait_replicas=1&wait_timeout=1"      # each push WAITs for the one replica, 1 s at most

SYSTEMS = {
    "mpqueue": lambda r: Mpqueue(r),
    "mpqueue-dispatch": lambda r: Mpqueue(r, mode="dispatch", name="mpqueue-dispatch", variant="dispatch mode",
                                          workloads=("drain", "latency", "idle")),
    # A rate limit far above the drain rate: what its bookkeeping costs (and a limited queue takes no job ahead).
    "mpqueue-rate": lambda r: Mpqueue(r, rate="100000/s", name="mpqueue-rate", versus=("mpqueue",),
                                      variant="`rate: 100000/s` (a limit above the drain rate)", workloads=("drain",)),
    "mpqueue-sqlite": lambda r: Mpqueue(r, broker="sqlite:///{tmp}/queue.db", name="mpqueue-sqlite",
                                        variant="SQLite broker",
                                        workloads=("push", "drain", "latency", "delayed", "idle", "sigkill", "ticks",
                                                   "result")),
    # Beyond one Redis (bench/systems/deployments.py starts each deployment once, for every row on it).
    "mpqueue-3q": lambda r: Mpqueue(r, queues=3, name="mpqueue-3q", versus=("mpqueue",),
                                    variant="3 queues × 1 worker (the Cluster row's layout), single Redis",
                                    workloads=BEYOND),
    "mpqueue-sentinel": lambda r: Mpqueue(r, deployment="sentinel", name="mpqueue-sentinel", versus=("mpqueue",),
                                          variant="Sentinel: through the master (1 replica, 3 sentinels)",
                                          workloads=BEYOND),
    "mpqueue-cluster": lambda r: Mpqueue(r, deployment="cluster", queues=3, name="mpqueue-cluster",
                                         versus=("mpqueue-3q", "mpqueue"),
                                         variant="Cluster: 3 masters (1 replica each), a queue × 1 worker on each",
                                         workloads=BEYOND),
    "mpqueue-durable": lambda r: Mpqueue(r, deployment="sentinel", query=DURABLE, name="mpqueue-durable",
                                         versus=("mpqueue-sentinel", "mpqueue"),
                                         variant="Sentinel, durable pushes (wait_replicas=1)",
                                         workloads=("push", "drain")),
    "mpqueue-cluster-durable": lambda r: Mpqueue(r, deployment="cluster", queues=3, query=DURABLE,
                                                 name="mpqueue-cluster-durable", versus=("mpqueue-cluster",),
                                                 variant="Cluster, durable pushes (wait_replicas=1)",
                                                 workloads=("push", "drain")),
    "mpqueue-async": lambda r: Mpqueue(r, concurrency=32, io50="async", name="mpqueue-async",
                                       variant="async def, 2 workers × concurrency 32", workloads=IO50),
    "mpqueue-threads": lambda r: Mpqueue(r, concurrency=32, io50="threads", name="mpqueue-threads",
                                         variant="def in threads, 2 workers × concurrency 32", workloads=IO50),
    "dramatiq": lambda r: Dramatiq(r),
    "dramatiq-threads": lambda r: Dramatiq(r, threads=32, name="dramatiq-threads",
                                           variant="--processes 2 --threads 32", workloads=IO50),
    "rq": lambda r: Rq(r),
    "rq-simple": lambda r: Rq(r, name="rq-simple", variant="RQ SimpleWorker", worker_class="rq.SimpleWorker",
                              workloads=("drain",)),
    "huey": lambda r: Huey(r),
    "huey-threads": lambda r: Huey(r, kind="thread", workers=64, name="huey-threads",
                                   variant="-k thread -w 64, 1 process", workloads=IO50),
    "huey-threads-2p": lambda r: Huey(r, kind="thread", workers=32, consumers=2, name="huey-threads-2p",
                                      variant="-k thread -w 32, 2 processes", workloads=IO50),
    "celery": lambda r: Celery(r),
    "celery-reliable": lambda r: Celery(r, reliable=True),
    "celery-threads": lambda r: Celery(r, pool="threads", concurrency=64, name="celery-threads",
                                       variant="-P threads --concurrency 64, 1 process", workloads=IO50),
    "celery-threads-2p": lambda r: Celery(r, pool="threads", concurrency=32, instances=2, name="celery-threads-2p",
                                          variant="-P threads --concurrency 32, 2 processes", workloads=IO50),
    "celery-gevent": lambda r: Celery(r, pool="gevent", concurrency=64, name="celery-gevent",
                                      variant="-P gevent --concurrency 64, 1 process", workloads=IO50),
    "celery-gevent-2p": lambda r: Celery(r, pool="gevent", concurrency=32, instances=2, name="celery-gevent-2p",
                                         variant="-P gevent --concurrency 32, 2 processes", workloads=IO50),
    "arq": lambda r: Arq(r),
    "arq-async": lambda r: Arq(r, max_jobs=32, name="arq-async", variant="2 processes × max_jobs 32",
                               workloads=IO50),
    "bare": Bare,
    "floor": Floor,
}

PEERS = ("dramatiq", "dramatiq-threads", "rq", "rq-simple", "huey", "huey-threads", "huey-threads-2p", "celery",
         "celery-reliable", "celery-threads", "celery-threads-2p", "celery-gevent", "celery-gevent-2p", "arq",
         "arq-async")
