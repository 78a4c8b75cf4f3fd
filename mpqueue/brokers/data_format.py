"""The broker's data format: which layout of keys, rows and envelopes the data in
a broker has, and the one rule every process applies to it.

The format is a number stored in the broker itself (Redis: the service-wide key
`mpq:format`, `mpq:{mpq}:format` on a Cluster; SQLite: `PRAGMA user_version`).
A broker without the record holds format 1: data written by v0.1.0, which
wrote none, or no data yet. Every process that opens a broker (supervisor,
worker, Client and apush, mpqctl, the dashboard) reads the record once, on its
first call that reaches the broker, and records CURRENT if there is none. Data
of a newer format than this code knows is refused with DataFormatError, never
read: a node left on an old release would otherwise misread it and lose jobs.

Nodes of one format run side by side: a rolling upgrade between releases that
share a format needs nothing (tests/e2e/test_rolling_upgrade.py runs v0.1.0
beside this tree). A release that changes the layout raises CURRENT, says so in
CHANGELOG.md, and must convert (or refuse) older data, which may carry no
record at all (while CURRENT == UNRECORDED, recording CURRENT where there is no
record says exactly what the broker holds).
"""
from __future__ import annotations

from .base import BrokerError

CURRENT = 1          # the format this code reads and writes
UNRECORDED = 1       # what a broker without the record holds (v0.1.0 wrote none)


class DataFormatError(BrokerError):
    """The broker's data is of a format this code does not understand (a newer
    release wrote it): nothing was read or written."""


def accept(recorded) -> int:
    """The format of a broker whose record reads `recorded` (None or 0: no record),
    if this code understands it; otherwise DataFormatError, in one line."""
    if recorded in (None, "", 0):
        found = UNRECORDED
    else:
        try:
            found = int(recorded)
        except (TypeError, ValueError):
            raise DataFormatError(f"broker data format record {str(recorded)[:40]!r} is not a format number: "
                                  "this broker was written by something other than mpqueue") from None
    if found > CURRENT:
        raise DataFormatError(f"broker data format {found} is newer than this mpqueue understands ({CURRENT}): "
                              "upgrade mpqueue on this host")
    if found < 1:
        raise DataFormatError(f"broker data format {found} is not one mpqueue ever wrote")
    return found
