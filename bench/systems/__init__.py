"""The systems under benchmark: name -> factory(redis). Columns of the table are
the systems' `column`; a system with a `variant` adds rows to its column's
figures (mpqueue's dispatch mode, RQ's SimpleWorker, Celery's reliable mode).

mpqueue on another broker is one more entry, e.g.
    "mpqueue-sqlite": lambda r: Mpqueue(r, broker="sqlite:///{tmp}/queue.db", name="mpqueue-sqlite",
                                        variant="SQLite broker", workloads=(...)),
(`{tmp}` is a fresh temporary directory; jobs still record into Redis db 1).
"""
from __future__ import annotations

from .arq import Arq
from .celery import Celery
from .dramatiq import Dramatiq
from .huey import Huey
from .mpqueue import Mpqueue
from .rq import Rq

SYSTEMS = {
    "mpqueue": lambda r: Mpqueue(r),
    "mpqueue-dispatch": lambda r: Mpqueue(r, mode="dispatch", name="mpqueue-dispatch", variant="dispatch mode",
                                          workloads=("drain", "latency")),
    "mpqueue-sqlite": lambda r: Mpqueue(r, broker="sqlite:///{tmp}/queue.db", name="mpqueue-sqlite",
                                        variant="SQLite broker",
                                        workloads=("push", "drain", "latency", "delayed", "idle", "sigkill")),
    "dramatiq": Dramatiq,
    "rq": lambda r: Rq(r),
    "rq-simple": lambda r: Rq(r, name="rq-simple", variant="RQ SimpleWorker", worker_class="rq.SimpleWorker",
                              workloads=("drain",)),
    "huey": Huey,
    "celery": lambda r: Celery(r),
    "celery-reliable": lambda r: Celery(r, reliable=True),
    "arq": Arq,
}

PEERS = ("dramatiq", "rq", "rq-simple", "huey", "celery", "celery-reliable", "arq")
