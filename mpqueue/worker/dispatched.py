"""Dispatch mode, the worker's side, as a source of units for the worker loop:
the supervisor reserves jobs and sends them over the control pipe; each one's
end goes back as a DONE message with its ack, which the supervisor folds into
its next reserve. The supervisor holds the jobs: what we did not run when we
exit, it hands back.

How many it sends is ours to say, by credit: when the loop wants jobs (the
executor's prefetch rule, the same as in grab mode: a job's worth per free
slot, more while recent jobs were short) we ask for what is not already on
its way (WANT), and the supervisor never sends beyond what we asked. So a
stream of short jobs arrives in batches of one reserve each, and a worker
about to recycle (max_jobs) is not sent jobs it will not run."""
from __future__ import annotations

from .. import ipc
from .units import Unit


class DispatchedUnit(Unit):
    def __init__(self, report: ipc.Channel, msg: dict):
        super().__init__(msg["token"], msg["envelope"])
        self.report, self.id = report, msg["id"]

    def done(self, ack) -> None:
        self.report.send(ipc.done_message(self.id, ack))


class DispatchedSource:
    def __init__(self, control, report: ipc.Channel):
        self.control, self.report = control, report
        self.asked = 0                   # jobs asked for since we started (control.received: sent)

    def held(self) -> int:
        return len(self.control.inbox)

    def take(self, free: int, now: float) -> list[Unit]:
        return [DispatchedUnit(self.report, msg) for msg in self.control.take_jobs(free)]

    def fill(self, want: int, free: int, running) -> bool:
        """Ask for `want` jobs, less those asked for and not yet here; they arrive
        over the pipe (the caller waits on it), so nothing is in hand now."""
        more = want - (self.asked - self.control.received)
        if more > 0:
            self.report.send(ipc.want_message(more))
            self.asked += more
        return False

    def wait(self, timeout: float, fds) -> None:
        self.control.wait(fds, timeout)  # a JOB message lands in control.inbox

    def deliver(self) -> None:
        pass                             # each end was reported as it happened

    def hand_back(self) -> None:
        pass                             # the supervisor hands back what it sent and we did not run

    def close(self) -> None:
        pass
