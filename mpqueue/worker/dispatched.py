"""Dispatch mode, the worker's side, as a source of units for the worker loop:
the supervisor reserves jobs and sends them over the control pipe (never more
than this worker has free slots); each one's end goes back as a DONE message
with its ack, which the supervisor folds into its next reserve. The supervisor
holds the jobs: what we did not run when we exit, it hands back."""
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

    def held(self) -> int:
        return 0

    def take(self, free: int, now: float) -> list[Unit]:
        return [DispatchedUnit(self.report, msg) for msg in self.control.take_jobs(free)]

    def fill(self, want: int, free: int, running) -> bool:
        return False                     # the supervisor sends jobs; we never reserve

    def wait(self, timeout: float, fds) -> None:
        self.control.wait(fds, timeout)  # a JOB message lands in control.inbox

    def deliver(self) -> None:
        pass                             # each end was reported as it happened

    def hand_back(self) -> None:
        pass                             # the supervisor hands back what it sent and we did not run

    def close(self) -> None:
        pass
