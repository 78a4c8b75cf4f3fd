"""A worker process: boot (import task code, run start hooks), then serve jobs
from its source until told to stop or recycled. One worker serves one queue.

Talks to its supervisor over two pipes (ipc.py): `report` (worker ->
supervisor: ready, boot failure, and in dispatch mode finished jobs) and
`control` (supervisor -> worker: stop, and in dispatch mode the jobs to run).
Never notifies systemd. Serving is the worker loop's business (loop.py), over
the source and executor the queue's settings pick there.
"""
from __future__ import annotations

import asyncio
import ctypes
import inspect
import logging
import os
import signal
import sys
import traceback

from .. import contrib, ipc, logsetup
from ..brokers import BrokerError, DataFormatError, open_broker
from ..core import tasks
from ..core.names import import_string
from ..execution.aio import EventLoop
from ..execution.runner import Runner
from ..proc import SignalQueue, set_title
from ..producer.client import Client
from ..producer.default import set_default_client
from .control import Control
from .loop import Parts, build
from .recycle import Recycler, rss_mb

# Broker connections a worker uses besides its running jobs': its reserve/ack
# loop, lease renewal, heartbeats, the hand-off receipt sender.
POOL_MARGIN = 8

log = logging.getLogger("mpqueue.worker")
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    # If the supervisor is SIGKILLed, don't live on as an orphan running jobs.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(ipc.EXIT_FAILED)


class Worker:
    def __init__(self, service, queue, index: int, node_id: str, report_fd: int, control_fd: int,
                 scoreboard, parent_pid: int, tally=None):
        self.service, self.cfg, self.index = service, queue, index
        self.tally = tally                # the metrics' counters, shared with the supervisor
        self.consumer = f"{node_id}/{os.getpid()}"
        self.report, self.control = ipc.Channel(report_fd), ipc.Channel(control_fd)
        self.scoreboard = scoreboard
        self.parent_pid = parent_pid
        self.broker = None
        self.runner = None
        self.scope = None                 # the framework's per-job scope (contrib/), if the YAML names one
        self.signals = None
        self.memory_limit = queue.memory_limit
        self.aio = EventLoop(threaded=queue.concurrency > 1)

    # -- lifecycle
    def main(self) -> int:
        _die_with_parent(self.parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the supervisor orchestrates ^C
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.signals = SignalQueue([signal.SIGTERM])
        set_title(f"mpqueue {self.service.name}: {self.cfg.name} worker {self.index}")
        try:
            self.boot()
        except BaseException as exc:  # noqa: BLE001 - report any boot failure, then exit
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log.error("worker failed to boot: %s", text, extra={"queue": self.cfg.name},
                      exc_info=True)
            self.report.send({"type": ipc.BOOT_FAILED, "error": text})
            return ipc.EXIT_BOOT_FAILED
        self.report.send({"type": ipc.READY, "tasks": {n: t.public() for n, t in tasks.all_tasks().items()}})
        self.serve()
        self.run_stop_hooks()
        return ipc.EXIT_OK

    def serve(self) -> None:
        control = Control(self.control, self.signals, self.scoreboard)
        recycler = Recycler(self.cfg.name, self.cfg.max_jobs, self.memory_limit, control.stop, self.tally)
        build(Parts(self.broker, self.service, self.cfg, self.consumer, self.runner, control, self.report),
              recycler).run()

    def boot(self) -> None:
        logsetup.setup_logging(self.service.log, self.service.name)
        for entry in reversed(self.service.path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        # Every running job may push or settle at the same moment: the pool lends that
        # many connections and a margin (redis_pools.py; SQLite ignores it).
        self.broker = open_broker(self.service.broker, connections=self.cfg.concurrency + POOL_MARGIN)
        try:
            self.broker.check_format()    # newer data: a boot failure, whose error names both formats
        except DataFormatError:
            raise
        except BrokerError:
            pass                          # down now: the first call that reaches it checks
        # Jobs that push jobs use this worker's own broker connection.
        set_default_client(Client(self.service.broker, broker=self.broker, max_payload=self.service.max_payload))
        # The framework (Django, Flask) first: task modules import its models and app.
        self.scope = contrib.boot(self.service.framework)
        if self.scope is not None:
            _keep_our_loggers()
        for name in self.service.imports:
            __import__(name)
        context = {"service": self.service.name, "queue": self.cfg.name, "worker_index": self.index}
        for hook in (self.service.on_worker_start, self.cfg.on_worker_start):
            if hook:       # a coroutine runs on the jobs' loop; either way inside the framework's scope
                self.aio.call(_scoped(self.scope, import_string(hook)), context)
        self.runner = Runner(self.broker, self.service, self.cfg, self.index, self.scoreboard, self.aio, self.tally,
                             self.scope)
        self.memory_limit = self.checked_memory_limit()

    def run_stop_hooks(self) -> None:
        """on_worker_stop, the queue's then the service's, once the last job has ended
        (stop, reload or recycling; not a kill): close what on_worker_start opened.
        A failing hook is logged; the worker still exits cleanly."""
        context = {"service": self.service.name, "queue": self.cfg.name, "worker_index": self.index}
        for hook in (self.cfg.on_worker_stop, self.service.on_worker_stop):
            if not hook:
                continue
            try:
                func = _scoped(self.scope, import_string(hook))
                if self.aio.threaded and inspect.iscoroutinefunction(func):
                    asyncio.run(func(context))       # the jobs' loop thread has ended with the jobs
                else:
                    self.aio.call(func, context)
            except Exception:  # noqa: BLE001 - the jobs are settled; say what failed and exit
                log.exception("on_worker_stop hook %s failed", hook, extra={"queue": self.cfg.name})

    def checked_memory_limit(self) -> int:
        """memory_limit, or 0 when the worker is over it already after boot: every
        job would recycle it (a fork and a full re-import each time)."""
        limit = self.cfg.memory_limit
        if limit and (rss := rss_mb()) > limit:
            log.error("memory_limit %d MB is below this worker's size after boot (%.0f MB): ignored, or every "
                      "job would recycle the worker; raise it above that", limit, rss, extra={"queue": self.cfg.name})
            return 0
        return limit


def _scoped(scope, hook):
    """`hook`, run inside the framework's scope (a start hook may use the app or the ORM)."""
    if scope is None:
        return hook
    if inspect.iscoroutinefunction(hook):
        async def run_async(context):
            token = await scope.aenter()
            try:
                return await hook(context)
            finally:
                await scope.aexit(token)
        return run_async

    def run(context):
        token = scope.enter()
        try:
            return hook(context)
        finally:
            scope.exit(token)
    return run


def _keep_our_loggers() -> None:
    # A framework's logging setup (Django's LOGGING without disable_existing_loggers:
    # False) disables the loggers that exist already: ours report every job.
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("mpqueue") and isinstance(logger, logging.Logger):
            logger.disabled = False
