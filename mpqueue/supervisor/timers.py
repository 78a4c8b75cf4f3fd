"""The supervisor's periodic duties, on its injectable monotonic clock, and how
often the lease-bound ones come round."""
from __future__ import annotations


class Timers:
    def __init__(self, clock, names):
        self.clock = clock
        self._at = {name: 0.0 for name in names}     # every duty is due at the first turn

    def fire(self, name: str, every: float) -> bool:
        """True when `name` is due; it is then due again `every` seconds from now."""
        now = self.clock()
        if now < self._at[name]:
            return False
        self._at[name] = now + every
        return True

    def again(self, name: str, after: float) -> None:
        """Make `name` due `after` seconds from now, whatever its interval."""
        self._at[name] = self.clock() + after

    def next_in(self) -> float:
        """Seconds until the next duty is due (0 if one is overdue)."""
        return max(0.0, min(self._at.values()) - self.clock())


def shortest_lease(cfg) -> float:
    return min(q.timeout for q in cfg.queues.values()) + cfg.lease_grace


def reap_every(cfg, cap: float) -> float:
    """Half the shortest lease, at most `cap`: a dead node's job comes back within
    1.5 leases, and a service with long timeouts still idles cheaply."""
    return min(cap, shortest_lease(cfg) / 2)


def renew_every(cfg, cap: float) -> float:
    """A quarter of the shortest lease, at most `cap`: a lease then never ends
    while its node lives, however long the job or its batch takes."""
    return min(cap, shortest_lease(cfg) / 4)
