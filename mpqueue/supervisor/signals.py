"""What each signal asks of the supervisor: a table from signal to one small
method (gunicorn's SIG_NAMES and handle_<sig>). The signal handler proper only
queues the number (proc.SignalQueue) and wakes the loop; the loop then calls
these, so they may log, stop workers and start a reload. A mixin of Supervisor
(loop.py), whose stop and reload steps they call."""
from __future__ import annotations

import logging
import signal

log = logging.getLogger("mpqueue.supervisor")
SIG_HANDLERS = {signal.SIGTERM: "handle_term", signal.SIGINT: "handle_int", signal.SIGQUIT: "handle_quit",
                signal.SIGHUP: "handle_hup", signal.SIGCHLD: "handle_chld"}
STOP_SIGNALS = tuple(SIG_HANDLERS)     # the signals the supervisor catches (all of them, despite the name)


class SignalActions:
    def handle_signal(self, signum: int) -> None:
        getattr(self, SIG_HANDLERS[signum])()

    def handle_term(self) -> None:
        """systemd's stop: drain; a second one while draining: stop now."""
        if self.stopping:
            log.warning("second stop signal: stopping now")
            self.quick_stop()
        else:
            self.graceful_stop()

    def handle_int(self) -> None:
        """Ctrl-C in a terminal: as TERM."""
        self.handle_term()

    def handle_quit(self) -> None:
        self.quick_stop()

    def handle_hup(self) -> None:
        """Reload, unless stopping: a new generation would only be waited for and killed."""
        if not self.stopping:
            self.begin_reload()

    def handle_chld(self) -> None:
        """Only wakes the loop: every turn reaps whatever child has died."""
