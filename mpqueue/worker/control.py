"""A worker's line to its supervisor and to its own signals: the control pipe
(STOP, and in dispatch mode the jobs to run), SIGTERM, and the scoreboard's
beat that tells the supervisor an idle worker lives.

Between jobs the loop asks look(), which makes no system call for most jobs of
a stream of short ones: a signal sets a flag the handler's queue shows at once,
and the pipe (where the supervisor's STOP comes) is polled only once every
LOOK_EVERY seconds of work; whenever the worker waits, it waits here."""
from __future__ import annotations

import os
import time

from .. import ipc, proc

LOOK_EVERY = 0.002     # a stop asked over the pipe during a stream of short jobs takes effect this soon


class Control:
    def __init__(self, channel: ipc.Channel, signals, scoreboard, clock=time.monotonic):
        self.channel, self.signals, self.scoreboard, self.clock = channel, signals, scoreboard, clock
        self.stopping = False
        self.inbox: list[dict] = []       # dispatch mode: jobs sent to us, not yet taken
        self.received = 0                 # dispatch mode: jobs sent to us since we started
        self._looked = clock()

    def stop(self) -> None:
        """Take no new jobs: a stop, or recycling."""
        self.stopping = True

    def look(self) -> None:
        """Between jobs: notice a signal at once and the pipe within LOOK_EVERY."""
        if self.signals.pending() or self.clock() - self._looked >= LOOK_EVERY:
            self.wait([], 0)

    def wait(self, fds, timeout: float) -> list:
        """Until the pipe, a signal or one of `fds` is readable, or `timeout` s; the
        readable ones of `fds`. Stamps the scoreboard: this worker lives."""
        readable = proc.readable([self.channel.fd, self.signals.fileno(), *fds], max(0.0, timeout))
        self._looked = self.clock()
        self.scoreboard.beat()
        if self.signals.fileno() in readable and self.signals.drain():
            self.stopping = True
        if self.channel.fd in readable:
            self._receive()
        return readable

    def take_jobs(self, n: int) -> list[dict]:
        """Up to `n` of the jobs the supervisor sent (dispatch mode), oldest first."""
        jobs, self.inbox = self.inbox[:n], self.inbox[n:]
        return jobs

    def _receive(self) -> None:
        messages = self.channel.receive()
        if messages is None:               # supervisor gone: don't live on running jobs
            os._exit(ipc.EXIT_FAILED)
        for msg in messages:
            if msg["type"] == ipc.STOP:
                self.stopping = True
            elif msg["type"] == ipc.JOB:
                self.inbox.append(msg)
                self.received += 1
