"""The Redis broker's job handles (Client.result, Client.cancel): watching one
job for its end (watch.lua, then a subscription the ending script publishes
on) and cancelling (cancel.lua). Mixed into RedisBroker, which provides _call,
_on, keys and target."""
from __future__ import annotations

from .base import WATCH_TTL
from .redis_watches import SharedJobWatch, Watches


class RedisHandles:
    _watches = None

    def watch(self, queue, job_id):
        """A SharedJobWatch: subscribed through this broker's one connection per
        server (redis_watches.py), then watched (watch.lua)."""
        if self._watches is None:
            self._watches = Watches(self.target.sharded)
        k = self.keys(queue)

        def subscribe(w):
            self._on(queue, lambda node: self._watches.attach(node, w))

        w = SharedJobWatch(f"{k.watch}:{job_id}",
                           lambda: self._call("watch", queue, [job_id, int(WATCH_TTL * 1000)], [k.done(job_id)]),
                           subscribe)
        try:
            subscribe(w)
            w.refresh()      # subscribed first, then watched: no end can slip between
        except BaseException:
            w.close()
            raise
        return w

    def close_watches(self) -> None:
        if self._watches is not None:
            self._watches.close()

    def cancel(self, queue, job_id, envelope, ttl, kill=False):
        return self._call("cancel", queue, [job_id, envelope or "", "kill" if kill else "ask", max(0, int(ttl))],
                          [self.keys(queue).done(job_id)])

    def cancel_requested(self, queue, job_id):
        req = self._on(queue, lambda node: node.client.hget(self.keys(queue).cancels, job_id))
        return req.split(" ", 1)[0] if req else None

    def cancel_requests(self, queue):
        reqs = self._on(queue, lambda node: node.client.hgetall(self.keys(queue).cancels))
        return {job_id: req.split(" ", 1)[0] for job_id, req in reqs.items()}

