"""The values that cross the broker boundary: what producers push, what workers
ack and get reserved, what recovery reads. Plain frozen records, no behaviour
beyond their own conversions; base.py's contracts speak in them."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PushItem:
    """One job to push: its envelope (core/envelope.py), priority 0..9, delay in
    seconds (0: due now), and `caller_id` when the caller chose the job's id (then
    the push is deduplicated on it, see Lifecycle.push)."""
    envelope: str
    priority: int = 0
    delay: float = 0.0
    caller_id: str | None = None

    def delay_ms(self) -> int:
        """The delay in whole milliseconds, 0 for none (or a negative one)."""
        return int(round(self.delay * 1000)) if self.delay and self.delay > 0 else 0


@dataclass(frozen=True)
class Ack:
    """A finished job to acknowledge: removes it from the broker for good."""
    id: str
    token: str
    record: str        # JSON done-record kept for `result_ttl` seconds
    ttl: int           # result_ttl; 0 keeps nothing
    first_attempt: bool = True


@dataclass(frozen=True)
class Held:
    """A reservation as the broker records it. `unconfirmed`: handed to an idle
    consumer by a push, which has not confirmed taking it (if its lease ends,
    nobody took it: recovery refunds its attempt)."""
    id: str
    token: str
    consumer: str
    envelope: str
    unconfirmed: bool = False


@dataclass(frozen=True)
class Tick:
    """What tick() came to. outcome: "fired" (this call pushed the job), "taken"
    (the tick, or a later one, was claimed already), "skipped" (more than the grace
    late: recorded as dealt with, no job), "new" (a schedule the broker had no
    record of: its first tick tried is recorded as dealt with, never fired, on
    time or not, so a schedule added or renamed starts with its next tick and can't
    re-fire a tick claimed under another name; nothing to count as missed), "early" (not due yet on the
    broker's clock: nothing recorded). previous_ms: the last tick claimed before,
    -1 if none. now_ms: the broker's clock."""
    outcome: str
    previous_ms: int
    now_ms: int


@dataclass(frozen=True)
class Reserved:
    token: str
    envelope: str
