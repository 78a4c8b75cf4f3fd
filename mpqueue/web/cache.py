"""One snapshot for every tab: /api/state is computed at most once per refresh
interval for each page asked (view, queue, filters, offset, limit), however many
browsers poll it. Ten open tabs cost one set of broker reads per interval, not
ten.

A snapshot holds only what every viewer may see (the page's data, the read-only
flag of this process); nothing per user (the CSRF token, who is logged in) goes
in. Concurrent requests for the same key wait for the one computing it (single
flight), the number of keys is bounded (the least recently used goes), and an
action clears everything so its outcome shows on the next poll.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

MAX_KEYS = 64


class _Entry:
    __slots__ = ("lock", "value", "expires")

    def __init__(self):
        self.lock = threading.Lock()
        self.value = None
        self.expires = 0.0


class SnapshotCache:
    def __init__(self, ttl: float, max_keys: int = MAX_KEYS, clock=time.monotonic):
        self.ttl, self.max_keys, self.clock = ttl, max_keys, clock
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0              # how many snapshots were made (tests, bench)

    def get(self, key, compute):
        """The fresh value for `key`, from `compute()` if there is none."""
        entry = self._entry(key)
        with entry.lock:               # one computes, the others wait and share its value
            if entry.value is None or self.clock() >= entry.expires:
                entry.value = compute()
                entry.expires = self.clock() + self.ttl
                self.computed += 1
            return entry.value

    def clear(self) -> None:
        with self._lock:
            for entry in self._entries.values():
                entry.expires = 0.0

    def _entry(self, key) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > self.max_keys:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
            return entry
