"""The `process_*` metrics of the supervisor and each of its workers, read from
/proc by the metrics thread at scrape time.

prometheus_client's ProcessCollector exports one process without labels; here
every process of the service is one label set, (role, queue, index): the
supervisor (queue and index empty) and each worker by its queue and its index
among that queue's workers, so the series stay as few as the configured workers.
While a replaced worker finishes its last job beside its successor, the two
share a label set and only the newer one is shown (the older is on its way out).

Runs in the metrics thread: it reads with os.open/os.read (no buffered file
object, no lock), never logs, and skips a process that is gone by the time it
is read (a worker reaped since the snapshot).
"""
from __future__ import annotations

import os
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LABELS = ["role", "queue", "index"]
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class Process(NamedTuple):
    """One process to report: its labels and pid."""
    role: str          # "supervisor" | "worker"
    queue: str         # "" for the supervisor
    index: str         # the worker's index within its queue, "" for the supervisor
    pid: int


class Stats(NamedTuple):
    resident_bytes: int
    virtual_bytes: int
    cpu_seconds: float
    open_fds: int
    start_time: float   # seconds since the epoch


def processes(supervisor_pid: int, handles) -> tuple[Process, ...]:
    """The supervisor and its workers, one per (queue, index): the newest where a
    retiring worker and its successor share one."""
    newest = {}
    for h in handles:
        key = (h.queue, h.index)
        if key not in newest or h.started_at >= newest[key].started_at:
            newest[key] = h
    workers = [Process("worker", q, str(i), h.pid) for (q, i), h in sorted(newest.items())]
    return (Process("supervisor", "", "", supervisor_pid), *workers)


def read(pid: int) -> Stats | None:
    """The process's numbers from /proc, or None if it is gone (or hidden)."""
    try:
        stat = _read_text(f"/proc/{pid}/stat")
        statm = _read_text(f"/proc/{pid}/statm")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        boot = _boot_time()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: count after it
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime, start, vsize = int(fields[11]), int(fields[12]), int(fields[19]), int(fields[20])
    # statm's second field is what a worker's memory_limit check reads (worker/process.py)
    resident = int(statm.split()[1]) * _PAGE
    return Stats(resident, vsize, (utime + stime) / _TICKS, fds, boot + start / _TICKS)


def families(procs) -> list:
    """The process_* metric families of `procs` (Process tuples)."""
    same = "; a series for the supervisor and each worker (labels: see process_resident_memory_bytes)"
    rss = GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes (/proc/PID/statm) of "
                            "the supervisor (role=supervisor, queue and index empty) and of each worker "
                            "(role=worker, its queue, its index among the queue's workers): a worker's is what "
                            "its memory_limit compares against", labels=LABELS)
    vms = GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes" + same, labels=LABELS)
    cpu = CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds" + same,
                              labels=LABELS)
    fds = GaugeMetricFamily("process_open_fds", "Number of open file descriptors" + same, labels=LABELS)
    start = GaugeMetricFamily("process_start_time_seconds", "Start time of the process since unix epoch in "
                              "seconds" + same, labels=LABELS)
    for proc in procs:
        stats = read(proc.pid)
        if stats is None:
            continue
        labels = [proc.role, proc.queue, proc.index]
        rss.add_metric(labels, stats.resident_bytes)
        vms.add_metric(labels, stats.virtual_bytes)
        cpu.add_metric(labels, stats.cpu_seconds)
        fds.add_metric(labels, stats.open_fds)
        start.add_metric(labels, stats.start_time)
    return [rss, vms, cpu, fds, start]


_btime: list[float] = []


def _boot_time() -> float:
    """The host's boot time (epoch seconds), /proc/stat's btime, read once."""
    if not _btime:
        for line in _read_text("/proc/stat").splitlines():
            if line.startswith("btime "):
                _btime.append(float(line.split()[1]))
                break
        else:
            _btime.append(0.0)
    return _btime[0]


def _read_text(path: str) -> str:
    """A small /proc file whole, without a buffered file object."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode("ascii", "replace")
    finally:
        os.close(fd)
