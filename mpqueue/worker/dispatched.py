"""Dispatch mode, the worker's side: the supervisor reserves jobs and hands them
over the control pipe; this worker runs each and reports it done (with its ack,
which the supervisor folds into its next reserve)."""
from __future__ import annotations

import logging
import os
import select

from .. import ipc
from ..brokers import BrokerError
from ..ipc import BEAT_EVERY

log = logging.getLogger("mpqueue.worker")


class DispatchedSource:
    def __init__(self, worker):
        self.w = worker

    def serve(self) -> None:
        w = self.w
        while not w.stopping:
            readable, _, _ = select.select([w.control.fd, w.signals.fileno()], [], [], BEAT_EVERY)
            w.scoreboard.beat()
            if w.signals.fileno() in readable and w.signals.drain():
                w.stopping = True
            if w.control.fd not in readable:
                continue
            for msg in w.on_control():
                try:
                    ack = w.runner.run(msg["token"], msg["envelope"])
                except BrokerError as exc:
                    # Ran but can't be settled: exit; the supervisor settles it (it knows what it sent).
                    log.warning("broker unreachable while settling a job, exiting to be replaced: %s", exc,
                                extra={"queue": w.cfg.name})
                    os._exit(ipc.EXIT_FAILED)
                reply = {"type": ipc.DONE, "id": msg["id"]}
                if ack:
                    reply.update(token=ack.token, record=ack.record, ttl=ack.ttl, first=ack.first_attempt)
                w.report.send(reply)
                w.after_job()
