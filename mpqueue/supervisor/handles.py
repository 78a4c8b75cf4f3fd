"""Worker processes as the supervisor sees them: fork one, talk to it, kill it
(and why: KillReason, with KILLS saying what each reason means), reap it.
The worker package is imported by the first fork's parent, so every worker starts with it
loaded (importing it in each child cost every start, and every recycle, ~35 ms) and
runs the supervisor's own version of it even after the files on disk changed; the
service's task modules are still imported in each child (a reload loads new code)."""
from __future__ import annotations

import enum
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import NamedTuple

from ..ipc import EXIT_FAILED, STOP, Channel, Scoreboard
from ..tally import WorkerTally

log = logging.getLogger("mpqueue.supervisor")


class KillReason(enum.StrEnum):
    """Why the supervisor killed a worker. The value is the word the restarts
    metric and the tests use."""
    TIMEOUT = "timeout"        # a job it ran was past its timeout
    CANCELLED = "cancelled"    # a job it ran was cancelled with kill=True
    STALE = "stale"            # idle and silent too long
    SHUTDOWN = "shutdown"      # the service stops (or a reload is abandoned)


class KillRule(NamedTuple):
    job: str | None        # how the job it was killed for is settled at once (Recovery.settle's kind)
    held: str              # how the rest of what it held is settled when it is reaped
    restart: str | None    # the restart reason counted (metrics.RESTART_REASONS); None: not a restart


# The one table of what a kill means. Killed for a job's timeout or cancel: that job
# is settled at once (a cancelled one as crashed: its standing request ends it as
# cancelled), and its siblings did nothing wrong, so they go back unspent. A stale
# worker may have died holding a job it never marked: judged as a crash.
KILLS = {
    KillReason.TIMEOUT: KillRule(job="timeout", held="timeout", restart="timeout"),
    KillReason.CANCELLED: KillRule(job="crashed", held="timeout", restart="cancelled"),
    KillReason.STALE: KillRule(job=None, held="crashed", restart="stale"),
    KillReason.SHUTDOWN: KillRule(job=None, held="shutdown", restart=None),
}


@dataclass(eq=False)
class WorkerHandle:
    pid: int
    queue: str
    index: int
    generation: int
    report: Channel
    control: Channel
    scoreboard: Scoreboard
    consumer: str
    tally: WorkerTally | None = None  # its job counters, folded into the pool's totals when it is gone
    holding: object = None            # how its fetch mode holds its jobs (holding.py)
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    retiring: bool = False            # asked to finish its job and exit
    replaced: bool = False            # ...because a reload replaces it
    killed_for: KillReason | None = None     # we killed it, and why (the first reason counts)
    boot_error: str | None = None
    overdue: set = field(default_factory=set)   # ids of its jobs settled as a timeout when we killed it

    @property
    def boot_slot(self) -> tuple[str, int, int]:
        """What its boot back-off is kept for: (queue, worker index, generation), so a
        new generation that cannot boot never delays the replacement of an old worker."""
        return self.queue, self.index, self.generation

    def tell(self, msg: dict) -> bool:
        try:
            self.control.send(msg)
            return True
        except OSError:               # already dead; the reaper will see it
            return False

    def stop(self) -> None:
        if not self.retiring:
            self.retiring = True
            self.tell({"type": STOP})

    def kill(self, reason: KillReason) -> None:
        self.killed_for = self.killed_for or reason
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        for fd in (self.report.fd, self.control.fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.scoreboard.close()
        if self.tally is not None:
            self.tally.close()


def spawn(service, queue_cfg, index: int, node_id: str, generation: int, inherited_fds,
          started_at: float) -> WorkerHandle:
    """Fork a worker for `queue_cfg`. The child never returns into the supervisor."""
    report_r, report_w = os.pipe()
    control_r, control_w = os.pipe()
    board = Scoreboard(queue_cfg.concurrency)
    tally = WorkerTally(queue_cfg.name)
    parent = os.getpid()
    from ..worker.process import Worker     # before the fork: see the module's docstring
    pid = os.fork()
    if pid == 0:                       # child
        code = EXIT_FAILED
        try:
            for fd in (report_r, control_w, *inherited_fds):
                _close(fd)
            for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(var, None)      # only the supervisor speaks to systemd
            code = Worker(service, queue_cfg, index, node_id, report_w, control_r, board, parent, tally).main()
        except BaseException:  # noqa: BLE001 - nothing may escape into the supervisor's stack
            traceback.print_exc()
        finally:
            logging.shutdown()
            sys.stderr.flush()
            os._exit(code)
    os.close(report_w)
    os.close(control_r)
    return WorkerHandle(pid, queue_cfg.name, index, generation, Channel(report_r), Channel(control_w),
                        board, f"{node_id}/{pid}", tally=tally, started_at=started_at)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def reap() -> list[tuple[int, int]]:
    """(pid, wait status) of every child that has exited, without blocking."""
    dead = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return dead
        if pid == 0:
            return dead
        dead.append((pid, status))


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exited with status {os.WEXITSTATUS(status)}"
