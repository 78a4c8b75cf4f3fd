"""The distributed Redis the Sentinel and Cluster rows run on: the test suite's
own deployments (tests/redis_deployments.py), on free loopback ports, started
by the first system that needs one and shared by the rows that measure the same
deployment with another URL (the durable rows), so the comparison is the
setting alone and no second group competes for the cores. Every process is
stopped by stop_all(), which the rows' cleanup() calls (main's finally, also on
SIGTERM and Ctrl-C).

Only the broker is here: the jobs still record their completion into db 1 of
the bench's private redis-server, which nothing here touches.
"""
from __future__ import annotations

from ..common import tree_cpu_seconds
from .base import Failed

# The tests detect a dead master within 1 s so that a failover test takes
# seconds; under a drain that keeps both cores busy a starved master could miss
# that and be failed over mid-measurement. The bench uses Redis's own defaults.
SENTINEL_DOWN_AFTER_MS = 30000
CLUSTER_NODE_TIMEOUT_MS = 15000


class Deployment:
    """A SentinelGroup (master, 1 replica, 3 sentinels) or a ClusterNodes (3
    masters, 1 replica each): its URL, a flush, its processes' CPU, and a check
    that no failover moved a master since it started."""

    def __init__(self, kind: str):
        from tests.redis_deployments import ClusterNodes, SentinelGroup
        self.kind = kind
        self.group = SentinelGroup() if kind == "sentinel" else ClusterNodes(masters=3, replicas=1)
        try:
            if kind == "sentinel":
                for port in self.group.sentinel_ports:
                    self.group.client(port).execute_command(
                        "SENTINEL", "SET", self.group.master_name, "down-after-milliseconds",
                        SENTINEL_DOWN_AFTER_MS)
            else:
                for port in self.group.ports:
                    self.group.client(port).config_set("cluster-node-timeout", CLUSTER_NODE_TIMEOUT_MS)
            self.masters = self._masters()
        except BaseException:
            self.group.stop()
            raise

    def _masters(self) -> list[int]:
        return [self.group.master_port()] if self.kind == "sentinel" else sorted(self.group.masters())

    def url(self, query: str = "") -> str:
        return self.group.url(query=query)

    def queue_names(self, count: int) -> list[str]:
        """Cluster: `count` queue names, each on a different master."""
        return self.group.queue_names(count, prefix="bench")

    def reset(self) -> None:
        """Before a workload: the same masters as at the start (else the figures
        would mix a failover in), and nothing stored (FLUSHALL on each master,
        which its replica applies too)."""
        if self._masters() != self.masters:
            raise Failed(f"a failover moved a {self.kind} master ({self.masters} -> {self._masters()})")
        self.group.flush()

    def cpu(self) -> dict:
        """CPU seconds so far: {"per_master": {port: seconds} of each master, "all":
        every process of the deployment's (masters, replicas, sentinels)}. Per master,
        because one master's command thread is what a queue cannot go past."""
        per = {}
        for port in self.masters:       # Redis's own getrusage: finer than /proc's 10 ms ticks
            info = self.group.client(port).info("cpu")
            per[port] = info["used_cpu_user"] + info["used_cpu_sys"]
        return {"per_master": per,
                "all": sum(tree_cpu_seconds(p.pid) for p in self.group.procs.values())}

    def stop(self) -> None:
        self.group.stop()


_running: dict[str, Deployment] = {}


def get(kind: str) -> Deployment:
    """The running deployment of this kind ("sentinel" or "cluster"), started on first use."""
    if kind not in _running:
        _running[kind] = Deployment(kind)
    return _running[kind]


def stop_all() -> None:
    while _running:
        _running.popitem()[1].stop()
