"""Boot back-off: a worker slot whose worker could not boot (its task code does
not import, a start hook raises) is restarted after 0.5, 1, 2 ... 60 s, so a
broken deploy never makes the supervisor fork-loop; the first worker of the
slot that reports ready clears it."""
from __future__ import annotations

FIRST, CAP = 0.5, 60.0


class BootBackoff:
    def __init__(self, clock):
        self.clock = clock
        self._slots: dict[tuple[str, int], tuple[int, float]] = {}   # slot -> (failures, restart at)

    def failed(self, slot: tuple[str, int]) -> float:
        """Record a boot failure of `slot` (queue, index); returns the delay before the next try."""
        failures = self._slots.get(slot, (0, 0.0))[0] + 1
        delay = min(CAP, FIRST * 2 ** (failures - 1))
        self._slots[slot] = (failures, self.clock() + delay)
        return delay

    def booted(self, slot: tuple[str, int]) -> None:
        self._slots.pop(slot, None)

    def may_start(self, slot: tuple[str, int]) -> bool:
        return self._slots.get(slot, (0, 0.0))[1] <= self.clock()

    def failures(self, slot: tuple[str, int]) -> int:
        return self._slots.get(slot, (0, 0.0))[0]
