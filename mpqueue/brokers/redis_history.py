"""The Redis broker's throughput history (the Inspection contract's record_history
and history): per queue, a ZSET `mpq:{<queue>}:history` of one point a minute,
"<interval start ms> <done_total> <failed_total>" scored by the interval's start,
written by lua/history.lua (which reads the totals and trims in the same step).

Mixed into RedisBroker (redis.py), which provides keys() and _by_node()
(redis_inspection.py): the queues are grouped by the node holding them, one
pipeline each.
"""
from __future__ import annotations

from .base import HISTORY_EVERY_MS, HISTORY_KEEP_MS
from .redis_inspection import executed
from .redis_scripts import script_source

# Sent with EVAL, not EVALSHA: a pipeline of registered scripts first asks SCRIPT EXISTS,
# a second round trip, and this runs once a minute (Redis caches the compiled body).
_SCRIPT = script_source("history")


class RedisHistory:
    def record_history(self, queues, every_ms=HISTORY_EVERY_MS, now_ms=None):
        args = [int(every_ms), HISTORY_KEEP_MS, "" if now_ms is None else int(now_ms)]

        def write(node, here):
            with node.client.pipeline(transaction=False) as pipe:
                for queue in here:
                    k = self.keys(queue)
                    pipe.eval(_SCRIPT, 2, *k.of("history"), *args)
                return dict(zip(here, executed(pipe)))
        written = self._by_node(queues, write)
        return max(written.values()) if written else None

    def history(self, queues, since_ms):
        def read(node, here):
            with node.client.pipeline(transaction=False) as pipe:
                for queue in here:
                    pipe.zrangebyscore(self.keys(queue).history, int(since_ms), "+inf")
                return {q: [_point(p) for p in points] for q, points in zip(here, executed(pipe))}
        found = self._by_node(queues, read)
        return {q: found[q] for q in queues}


def _point(member: str) -> tuple[int, int, int]:
    at, done, failed = member.split(" ")
    return int(at), int(done), int(failed)
