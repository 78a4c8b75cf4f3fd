"""Dispatch mode, the worker's side: the supervisor reserves jobs and hands them
over the control pipe; this worker runs each and reports it done (with its ack,
which the supervisor folds into its next reserve)."""
from __future__ import annotations


from .. import ipc, proc
from ..brokers import BrokerError
from ..ipc import BEAT_EVERY
from .grab import exit_unsettled


class DispatchedSource:
    def __init__(self, worker):
        self.w = worker

    def serve(self) -> None:
        w = self.w
        while not w.stopping:
            readable = proc.readable([w.control.fd, w.signals.fileno()], BEAT_EVERY)
            w.scoreboard.beat()
            if w.signals.fileno() in readable and w.signals.drain():
                w.stopping = True
            if w.control.fd not in readable:
                continue
            for msg in w.on_control():
                try:
                    ack = w.runner.run(msg["token"], msg["envelope"])
                except BrokerError as exc:
                    exit_unsettled(exc, w.cfg.name)     # the supervisor knows what it sent
                w.report.send(ipc.done_message(msg["id"], ack))
                w.after_job()
