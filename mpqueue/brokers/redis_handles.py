"""The Redis broker's job handles (Client.result, Client.cancel): watching one
job for its end (watch.lua, then a subscription the ending script publishes
on) and cancelling (cancel.lua). Mixed into RedisBroker, which provides _call,
_on, keys and target."""
from __future__ import annotations

from .base import WATCH_TTL
from .redis_waiter import RedisJobWatch


class RedisHandles:
    def watch(self, queue, job_id):
        k = self.keys(queue)

        def start(node):
            w = RedisJobWatch(node.client, f"{k.watch}:{job_id}", self.target.sharded,
                              lambda: self._call("watch", queue, [job_id, int(WATCH_TTL * 1000)], [k.done(job_id)]))
            try:
                w.refresh()      # subscribed first, then watched: no end can slip between
            except BaseException:
                w.close()
                raise
            return w
        return self._on(queue, start)

    def cancel(self, queue, job_id, envelope, ttl, kill=False):
        return self._call("cancel", queue, [job_id, envelope or "", "kill" if kill else "ask", max(0, int(ttl))],
                          [self.keys(queue).done(job_id)])

    def cancel_requested(self, queue, job_id):
        req = self._on(queue, lambda node: node.client.hget(self.keys(queue).cancels, job_id))
        return req.split(" ", 1)[0] if req else None

    def cancel_requests(self, queue):
        reqs = self._on(queue, lambda node: node.client.hgetall(self.keys(queue).cancels))
        return {job_id: req.split(" ", 1)[0] for job_id, req in reqs.items()}

