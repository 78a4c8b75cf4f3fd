"""The Redis broker's reads for dashboards and metrics, and its failed-store edits
beyond mpqctl's: the counts of many queues in one round trip per server, a
queue's delayed jobs, deleting failed jobs.

Mixed into RedisBroker (redis.py), which provides keys(), _on() and servers. Each
queue's keys are read on the node that owns its slot, so on a Cluster the queues
are grouped by node and each group is one pipeline.
"""
from __future__ import annotations

from ..core import envelope as jobmod

# Commands per queue in a counts pipeline: LLEN x10 (one list per priority), ZCARD sched,
# HLEN held, HLEN failed, HGETALL stats.
_PER_QUEUE = 14


def queue_count_commands(pipe, keys) -> None:
    """Queue the reads of one queue's counts on a redis-py pipeline."""
    for key in keys.ready:
        pipe.llen(key)
    pipe.zcard(keys.sched).hlen(keys.held).hlen(keys.failed).hgetall(keys.stats)


def counts_from(res: list) -> dict:
    """The counts dict (base.COUNT_KEYS) from one queue's slice of a counts pipeline."""
    stats = res[13]
    return {"ready": sum(res[:10]), "scheduled": res[10], "running": res[11], "failed": res[12],
            "done_total": int(stats.get("done", 0)), "failed_total": int(stats.get("failed", 0))}


class RedisInspection:
    """counts_many, scheduled and delete_failed of the Inspection contract."""

    def counts_many(self, queues):
        pending = list(dict.fromkeys(queues))
        out = {}
        while pending:
            # Each pass reads pending[0] and every other pending queue on the same node;
            # _on retries the pass after a redirect (a resharded slot) on the new owner.
            out.update(self._on(pending[0], lambda node, todo=pending: self._counts_on(node, todo)))
            pending = [q for q in pending if q not in out]
        return {q: out[q] for q in queues}

    def _counts_on(self, node, pending: list[str]) -> dict:
        here = [pending[0]] + [q for q in pending[1:] if self.servers.for_queue(q) is node]
        # MULTI/EXEC gives each queue's counts as one snapshot. A Cluster refuses a
        # transaction across slots, so there several queues go in a plain pipeline
        # (each command still atomic, the queue's counts read back to back).
        atomic = len(here) == 1 or not self.target.sharded
        with node.client.pipeline(transaction=atomic) as pipe:
            for queue in here:
                queue_count_commands(pipe, self.keys(queue))
            res = pipe.execute(raise_on_error=False)
        error = next((r for r in res if isinstance(r, Exception)), None)
        if error is not None:
            raise error          # unannotated, so _on can read a MOVED or ASK from it
        return {q: counts_from(res[i * _PER_QUEUE:(i + 1) * _PER_QUEUE]) for i, q in enumerate(here)}

    def scheduled(self, queue, limit=100):
        if limit <= 0:
            return []
        key = self.keys(queue).sched
        rows = self._on(queue, lambda node: node.client.zrange(key, 0, limit - 1, withscores=True))
        return [(jobmod.job_id(envelope), envelope, int(due)) for envelope, due in rows]

    def delete_failed(self, queue, ids):
        ids = list(dict.fromkeys(ids))
        if not ids:
            return 0
        key = self.keys(queue).failed
        return self._on(queue, lambda node: node.client.hdel(key, *ids))     # one HDEL: atomic
