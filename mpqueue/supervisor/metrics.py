"""Prometheus metrics, served by the supervisor itself (`metrics: {listen: ...}`).

A thread answers the scrapes, but it owns nothing and decides nothing: the
loop publishes an immutable snapshot (job counters of live and gone workers
and of recovery, worker states, restarts, the processes to report) at most once
a second, and reads the queue counts and oldest-job ages from the broker for it
when a scrape asks (woken through a pipe, at most once per COUNTS_TTL however
many scrapers call, under the broker gate like every call of the loop). The
thread renders the last snapshot, with the process_* numbers read from /proc
as it renders (procstats.py); a slow
scraper holds one of the thread's connections (metrics_http.py: many at once,
each with a deadline), never the loop, its watchdog ping or a worker. The
thread never logs and takes no lock a forked worker could inherit held.
"""
from __future__ import annotations

import os
import socket
import stat
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .. import __version__
from ..core.address import split_host_port
from ..tally import BUCKETS, CANCEL_ASKS, KINDS, OUTCOMES, Histogram, Totals
from . import metrics_http, procstats

COUNTS_TTL = 1.5          # a scrape storm reads the broker at most this often
SCRAPE_WAIT = 1.5         # how long a scrape waits for fresh queue counts before using older ones
QUEUE_STATES = ("ready", "scheduled", "running", "failed")
RESTART_REASONS = ("crashed", "timeout", "memory", "max_jobs", "reload", "stale", "boot_failed", "cancelled")


@dataclass(frozen=True)
class Snapshot:
    totals: Totals = field(default_factory=Totals)
    restarts: dict = field(default_factory=dict)       # (queue, reason) -> n
    workers: dict = field(default_factory=dict)        # (queue, state) -> n
    slots: dict = field(default_factory=dict)          # (queue, state) -> n
    queues: tuple = ()
    broker_up: bool = True
    ticks: dict = field(default_factory=dict)          # (schedule, fired|skipped) -> n, this node's
    tasks: dict = field(default_factory=dict)          # registered task -> its default queue
    service_up: bool = True                            # False: mpqctl's broker-only view
    processes: tuple = ()                              # procstats.Process of the supervisor and workers


def snapshot(pool, recovery, queues, broker_up: bool, ticks: dict | None = None) -> Snapshot:
    """What the loop knows now: read in the loop, rendered by the thread."""
    totals = pool.retired.copy()
    totals.merge(recovery.outcomes)
    workers = {(q, s): 0 for q in queues for s in ("busy", "idle", "booting")}
    slots = {(q, s): 0 for q in queues for s in ("busy", "free")}
    for h, board in pool.boards():
        if h.tally is not None:
            totals.merge(h.tally.read())
        state = "booting" if not h.ready else "busy" if board.busy else "idle"
        workers[(h.queue, state)] = workers.get((h.queue, state), 0) + 1
        slots[(h.queue, "busy")] = slots.get((h.queue, "busy"), 0) + board.busy
        slots[(h.queue, "free")] = slots.get((h.queue, "free"), 0) + h.scoreboard.size - board.busy
    tasks = {name: opts.get("queue") for name, opts in recovery.tasks.items()}
    return Snapshot(totals, dict(pool.restarts), workers, slots, tuple(queues), broker_up, dict(ticks or {}), tasks,
                    processes=procstats.processes(os.getpid(), pool.handles()))


def served_queues(nodes: list[dict]) -> set[str]:
    """The queues some live node (Inspection.nodes' heartbeat records) runs workers for."""
    return {q for n in nodes for q, w in (n.get("queues") or {}).items() if w.get("workers")}


def read_queues(broker, queues: list[str], serving=()) -> dict:
    """What a scrape shows of the broker, what render() takes as `counts`: queue -> its
    counts (base.COUNT_KEYS), "oldest_age", the seconds its oldest waiting job has
    waited (Inspection.oldest_ages), "paused" (Inspection.paused) and "served" (some
    live node has workers for it, or it is one of `serving`, the reading service's
    own). Every queue the broker knows is read, not only
    `queues`: a push to a queue no service declares shows as waiting jobs there, served 0."""
    queues = list(dict.fromkeys([*queues, *broker.queues()]))
    counts, ages = broker.counts_and_ages(queues)
    paused = broker.paused(queues)
    served = served_queues(broker.nodes()) | set(serving)
    return {q: {**counts[q], "oldest_age": ages[q], "paused": q in paused, "served": q in served} for q in queues}


def _pairs(snap: Snapshot) -> list:
    """(queue, task) of every series that exists from start: each registered task on its
    default queue (when this service serves it), and every pair counted so far."""
    pairs = {(q, t) for t, q in snap.tasks.items() if q in snap.queues}
    return sorted(pairs | {(q, t) for (q, t, _, _) in snap.totals.jobs})


def render(snap: Snapshot, counts: dict | None) -> bytes:
    """The exposition text. `counts`: queue -> counts dict with "oldest_age" and
    "paused", as read_queues reads it (None: the broker did not answer)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snap, counts))
    return generate_latest(registry)


class _Collector:
    def __init__(self, snap: Snapshot, counts):
        self.snap, self.counts = snap, counts

    def collect(self):
        if self.snap.service_up:            # the service's own counters; mpqctl's broker-only view has none
            yield from self.service_families()
        yield from self.queue_gauges()
        up = self.counts is not None and self.snap.broker_up
        yield GaugeMetricFamily("mpqueue_broker_up", "1 if the broker answered the scrape's read", value=int(up))
        yield GaugeMetricFamily("mpqueue_service_up", "1 if the running service served these metrics; 0 in "
                                "mpqctl metrics's broker-only view (the service is down, or has no metrics.listen)",
                                value=int(self.snap.service_up))
        info = GaugeMetricFamily("mpqueue_build_info", "mpqueue's version (the label); always 1", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def service_families(self):
        s = self.snap
        jobs = CounterMetricFamily("mpqueue_jobs", "Job attempts by outcome (done, retried, failed, cancelled) "
                                   f"and reason: the failure type ({', '.join(KINDS)}) for retried and failed, what "
                                   f"the cancel asked ({', '.join(CANCEL_ASKS)}) for cancelled, empty for done",
                                   labels=["queue", "task", "outcome", "reason"])
        pairs = _pairs(s)
        for queue, task in pairs:
            for outcome, reason in OUTCOMES:
                jobs.add_metric([queue, task, outcome, reason], s.totals.jobs.get((queue, task, outcome, reason), 0))
        yield jobs
        yield _histogram("mpqueue_job_duration_seconds", "Run time of finished job attempts (buckets from "
                         f"{BUCKETS[0] * 1000:g} ms to {BUCKETS[-1] / 60:g} min)",
                         ["queue", "task"], {**{p: Histogram() for p in pairs}, **s.totals.durations})
        waits = {(q,): Histogram() for q in s.queues}
        waits.update({(q,): h for q, h in s.totals.waits.items()})
        yield _histogram("mpqueue_job_wait_seconds", "From due (the push, or a delayed job's due time, on the "
                         "producer's clock) to start, first attempts", ["queue"], waits)
        yield _gauge("mpqueue_workers", "Worker processes of this node by state (busy, idle, booting)",
                     ["queue", "state"], s.workers)
        yield _gauge("mpqueue_worker_slots", "Job slots of this node's workers (concurrency) by state "
                     "(busy, free)", ["queue", "state"], s.slots)
        restarts = CounterMetricFamily("mpqueue_worker_restarts",
                                       f"Workers replaced, by why ({', '.join(RESTART_REASONS)})",
                                       labels=["queue", "reason"])
        zeros = {(q, r): 0 for q in s.queues for r in RESTART_REASONS}
        for (queue, reason), n in sorted({**zeros, **s.restarts}.items()):
            restarts.add_metric([queue, reason], n)
        yield restarts
        ticks = CounterMetricFamily("mpqueue_schedule_ticks", "Schedule ticks this node fired, and those it "
                                    "found missed and skipped (more than misfire_grace late), by outcome "
                                    "(fired, skipped)",
                                    labels=["schedule", "outcome"])
        for (name, outcome), n in sorted(s.ticks.items()):
            ticks.add_metric([name, outcome], n)
        yield ticks
        yield from procstats.families(s.processes)

    def queue_gauges(self):
        gauge = GaugeMetricFamily("mpqueue_queue_jobs", f"Jobs in the broker by state ({', '.join(QUEUE_STATES)}): "
                                  "every node's, read at scrape time",
                                  labels=["queue", "state"])
        paused = GaugeMetricFamily("mpqueue_queue_paused", "1 while the queue is paused (mpqctl pause): no "
                                   "node takes its jobs; else 0. For every queue", labels=["queue"])
        served = GaugeMetricFamily("mpqueue_queue_served", "1 if some live node runs workers for the queue; 0: "
                                   "its jobs wait until a service serving it starts (a queue no service declares, e.g. "
                                   "a task without queue= pushes to default). For every queue the broker knows, "
                                   "declared or not",
                                   labels=["queue"])
        for queue, counts in sorted((self.counts or {}).items()):
            for state in QUEUE_STATES:
                gauge.add_metric([queue, state], counts.get(state, 0))
            paused.add_metric([queue], int(bool(counts.get("paused"))))
            served.add_metric([queue], int(bool(counts.get("served", True))))
        yield gauge
        yield paused
        yield served
        throttled = CounterMetricFamily("mpqueue_queue_throttled", "Reserves the queue's rate limit cut short "
                                        "while jobs waited (every node's)", labels=["queue"])
        for queue, counts in sorted((self.counts or {}).items()):
            throttled.add_metric([queue], counts.get("throttled_total", 0))
        yield throttled
        age = GaugeMetricFamily("mpqueue_queue_oldest_job_age_seconds", "Seconds the oldest waiting job of the "
                                "queue has waited since it was due (0: none waits): the broker's clock now minus "
                                "the due time its producer's clock wrote, so producer clock skew shows here; read "
                                "at scrape time with mpqueue_queue_jobs",
                                labels=["queue"])
        for queue, counts in sorted((self.counts or {}).items()):
            age.add_metric([queue], counts.get("oldest_age", 0.0))
        yield age


def _gauge(name, doc, labels, values: dict):
    g = GaugeMetricFamily(name, doc, labels=labels)
    for key, n in sorted(values.items()):
        g.add_metric(list(key), n)
    return g


def _histogram(name, doc, labels, table: dict):
    h = HistogramMetricFamily(name, doc, labels=labels)
    for key, hist in sorted(table.items()):
        running, buckets = 0, []
        for bound, n in zip((*BUCKETS, float("inf")), hist.counts):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        h.add_metric(list(key), buckets, hist.sum)
    return h


class Endpoint:
    """The listening socket and its thread, and the loop's side of the handshake."""

    def __init__(self, listen: str, runtime_dir):
        self.listen = listen
        self._server = _bind(listen, runtime_dir, self)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._snapshot = Snapshot()
        self._counts, self._counts_at = None, -1e9
        self._fresh = threading.Event()
        self._wanted = False

    def fileno_for_children(self) -> list[int]:
        """Descriptors a forked worker must close."""
        return [*self._server.fds(), self._wake_r, self._wake_w]

    def start(self) -> None:
        self._server.start()

    # -- the loop's side
    def fds(self) -> list[int]:
        return [self._wake_r]

    def wants_counts(self, readable) -> bool:
        if self._wake_r in readable:
            try:
                os.read(self._wake_r, 512)
            except BlockingIOError:
                pass
        return self._wanted

    def publish(self, snap: Snapshot) -> None:
        self._snapshot = snap

    def counts_read(self, counts: dict | None) -> None:
        self._counts, self._counts_at, self._wanted = counts, time.monotonic(), False
        self._fresh.set()

    # -- the thread's side
    def scrape(self) -> bytes:
        if time.monotonic() - self._counts_at > COUNTS_TTL:
            self._fresh.clear()
            self._wanted = True
            try:
                os.write(self._wake_w, b"!")
            except BlockingIOError:
                pass                           # the loop has a wake-up pending already
            self._fresh.wait(SCRAPE_WAIT)
        return render(self._snapshot, self._counts)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        path = getattr(self._server, "path", None)
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass


def _bind(listen: str, runtime_dir, endpoint) -> metrics_http.Server:
    if listen == "unix":
        path = os.path.join(str(runtime_dir), "metrics.sock")
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):      # a socket left by a killed run; nothing else
                os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)                               # srw-rw----: the service's user and group
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        host = "localhost"
    else:
        host, port = split_host_port(listen)
        path = None
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
    sock.listen(socket.SOMAXCONN)       # a flood of idle clients waits here while the server sheds them
    server = metrics_http.Server(sock, endpoint.scrape, host)
    server.path = path
    return server
