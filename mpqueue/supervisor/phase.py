"""The supervisor's phases, and which may follow which: the one place its life
cycle is written down (gunicorn's arbiter keeps it in flags). Only the loop
moves from one to the next (Supervisor.enter); everything else reads it."""
from __future__ import annotations

import enum


class Phase(enum.Enum):
    STARTING = "starting"      # forking the first workers; READY=1 not sent yet
    SERVING = "serving"
    RELOADING = "reloading"    # a new generation boots beside the one serving (reload.py)
    DRAINING = "draining"      # a graceful stop: no new work, running jobs may finish until the deadline
    QUICK = "quick"            # stopping now: every worker is killed, its jobs go back

    @property
    def stopping(self) -> bool:
        return self in (Phase.DRAINING, Phase.QUICK)


# Phase -> the phases it may move to. A HUP during start-up or during a reload starts
# (another) reload; a stop signal ends any phase; nothing leaves a stop but a quicker one.
MOVES = {
    Phase.STARTING: {Phase.SERVING, Phase.RELOADING, Phase.DRAINING, Phase.QUICK},
    Phase.SERVING: {Phase.RELOADING, Phase.DRAINING, Phase.QUICK},
    Phase.RELOADING: {Phase.SERVING, Phase.RELOADING, Phase.DRAINING, Phase.QUICK},
    Phase.DRAINING: {Phase.QUICK},
    Phase.QUICK: {Phase.QUICK},        # a second QUIT while the first kills: the same again
}


class PhaseError(RuntimeError):
    """A move the table does not allow: a bug in the loop, never an operator's doing."""


def move(current: Phase, to: Phase) -> Phase:
    if to not in MOVES[current]:
        raise PhaseError(f"the supervisor cannot go from {current.value} to {to.value}")
    return to
