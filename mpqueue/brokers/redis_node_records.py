"""The Redis broker's node records (the Inspection contract's heartbeat, nodes and
forget_node): each running supervisor's last heartbeat, for `mpqctl status`,
`mpqctl ping` and the dashboard.

Two keys per service, both under ServiceKeys' prefix (the `{mpq}` hash tag on a
Cluster, so one node holds them all and a transaction may span them): a sorted
set of node ids by last beat, and one JSON string per node that expires after
the heartbeat's ttl. Mixed into RedisBroker (redis.py), which provides service
and _on().
"""
from __future__ import annotations

import json
import time

# An id whose record expired is dropped from the index by the next reader; ids
# older than this go at every heartbeat even when nobody reads.
_INDEX_KEEP = 24 * 3600


class RedisNodeRecords:
    def heartbeat(self, node_id, info, ttl):
        now, svc = time.time(), self.service

        def beat(node):
            with node.client.pipeline(transaction=False) as pipe:
                pipe.zadd(svc.nodes, {node_id: now})
                pipe.set(svc.node(node_id), json.dumps(info), ex=max(1, int(ttl)))
                pipe.zremrangebyscore(svc.nodes, "-inf", now - _INDEX_KEEP)
                pipe.execute()
        self._on(None, beat)

    def _read_nodes(self, node):
        svc = self.service
        ids = node.client.zrange(svc.nodes, 0, -1)
        if not ids:
            return []
        values = node.client.mget([svc.node(i) for i in ids])
        dead = [i for i, v in zip(ids, values) if v is None]
        if dead:
            node.client.zrem(svc.nodes, *dead)
        return [json.loads(v) for v in values if v]

    def nodes(self):
        return self._on(None, self._read_nodes)

    def forget_node(self, node_id):
        svc = self.service

        def forget(node):
            with node.client.pipeline(transaction=True) as pipe:     # the record and its index entry together
                pipe.delete(svc.node(node_id)).zrem(svc.nodes, node_id).execute()
        self._on(None, forget)
