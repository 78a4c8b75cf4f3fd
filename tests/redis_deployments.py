"""Distributed Redis deployments of our own, on free loopback ports: a Sentinel
group (a master, a replica, three sentinels) and a Cluster (masters with a
replica each), started by the tests and stopped by them, every process."""
from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis

from tests.support import free_ports, wait_for

# No persistence (a restarted node resyncs from whoever is master), and a full
# sync starts at once rather than after the default 5 s wait for more replicas.
DATA_NODE = ("--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")
# Fast failure detection, so a test's failover takes seconds, not the defaults' 30 s.
DOWN_AFTER_MS = 1000
NODE_TIMEOUT_MS = 1000
# Every node listens on ::1 too where the machine has IPv6 ("-": skipped where it
# has not), so a test can list one as [::1]:PORT after another host: the URL form
# that urllib.parse refuses on builds with the fix for CVE-2025-0938.
BIND = ("--bind", "127.0.0.1", "-::1")


@functools.cache
def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def url_hosts(ports) -> str:
    """HOST:PORT,... of our nodes for a URL, the second as [::1]:PORT where the
    machine has IPv6, so that every Sentinel and Cluster test reads that form."""
    return ",".join(f"[::1]:{p}" if i == 1 and ipv6_loopback() else f"127.0.0.1:{p}" for i, p in enumerate(ports))


def replicas_online(master: redis.Redis) -> int:
    """Replicas that finished their initial sync (before that, WAIT counts none)."""
    info = master.info("replication")
    return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
               and v.get("state") == "online")


class _Processes:
    """redis-server processes in one temporary directory."""

    def __init__(self, prefix: str):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.procs: dict[int, subprocess.Popen] = {}

    def spawn(self, port: int, *args: str) -> None:
        d = os.path.join(self.dir, str(port))
        os.makedirs(d, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            ["redis-server", *args, "--port", str(port), *BIND, "--dir", d,
             "--logfile", os.path.join(d, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)

    def answers(self, port: int) -> bool:
        try:
            return self.client(port).ping()
        except redis.exceptions.RedisError:
            return False

    def kill(self, port: int) -> None:
        """SIGKILL: the server dies as a crashed host's would, nothing flushed."""
        proc = self.procs.get(port)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _exited(self) -> list[int]:
        """Ports whose server process has exited."""
        return [port for port, proc in self.procs.items() if proc.poll() is not None]

    def stop(self, keep_dir: bool = False) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = {}
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class NodeExited(RuntimeError):
    """A redis-server we started exited at once (most likely: its port was taken)."""


START_TRIES = 3


class SentinelGroup(_Processes):
    """A master, a replica and three sentinels watching them as `master_name`."""
    master_name = "mpq"

    def __init__(self):
        super().__init__("mpq-sentinel-")
        ports = free_ports(5)
        self.data_ports, self.sentinel_ports = ports[:2], ports[2:]
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        master, replica = self.data_ports
        data = DATA_NODE
        self.spawn(master, *data)
        self.spawn(replica, *data, "--replicaof", "127.0.0.1", str(master))
        wait_for(lambda: all(self.answers(p) for p in self.data_ports), 10, what="the data nodes")
        wait_for(lambda: replicas_online(self.client(master)) == 1, 20, 0.05, what="the replica in sync")
        for port in self.sentinel_ports:
            conf = os.path.join(self.dir, f"sentinel-{port}.conf")
            with open(conf, "w") as f:
                f.write(f"sentinel monitor {self.master_name} 127.0.0.1 {master} 2\n"
                        f"sentinel down-after-milliseconds {self.master_name} {DOWN_AFTER_MS}\n"
                        f"sentinel failover-timeout {self.master_name} 5000\n"
                        f"sentinel parallel-syncs {self.master_name} 1\n")
            d = os.path.join(self.dir, str(port))
            os.makedirs(d, exist_ok=True)
            self.procs[port] = subprocess.Popen(
                ["redis-server", conf, "--sentinel", "--port", str(port), *BIND,
                 "--dir", d, "--logfile", os.path.join(d, "sentinel.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: all(self._sees_everyone(p) for p in self.sentinel_ports), 20,
                 what="the sentinels to know each other and the replica")

    def _sees_everyone(self, port: int) -> bool:
        try:
            info = self.client(port).execute_command("SENTINEL", "MASTER", self.master_name)
        except redis.exceptions.RedisError:
            return False
        fields = dict(zip(info[::2], info[1::2])) if isinstance(info, list) else info
        return int(fields["num-slaves"]) >= 1 and int(fields["num-other-sentinels"]) >= 2

    def url(self, db: int = 0, query: str = "") -> str:
        return f"redis+sentinel://{url_hosts(self.sentinel_ports)}/{self.master_name}/{db}" + (f"?{query}" if query else "")

    def master_port(self) -> int:
        addr = self.client(self.sentinel_ports[0]).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return int(addr[1])

    def master(self) -> redis.Redis:
        return self.client(self.master_port())

    def wait_promoted(self, old_master: int, timeout: float = 30) -> int:
        """Until every sentinel names a new master, and it takes writes; returns its port."""
        def moved():
            try:
                ports = {int(self.client(p).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                            self.master_name)[1]) for p in self.sentinel_ports}
            except redis.exceptions.RedisError:
                return None
            if len(ports) != 1 or old_master in ports:
                return None
            port = ports.pop()
            try:
                return port if self.client(port).info("replication")["role"] == "master" else None
            except redis.exceptions.RedisError:
                return None
        return wait_for(moved, timeout, 0.1, what="a new master")

    def failover(self) -> int:
        """A planned switch (SENTINEL FAILOVER); returns the new master's port."""
        old = self.master_port()
        self.client(self.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", self.master_name)
        return self.wait_promoted(old)

    def restore(self) -> None:
        """After a test that killed the master: bring it back as a replica of the
        new one, and wait until the group has a replica again."""
        master = self.master_port()
        for port in self.data_ports:
            if port != master and not self.answers(port):
                self.spawn(port, *DATA_NODE, "--replicaof", "127.0.0.1", str(master))
        # A full resync, which Sentinel may restart once as it converts the old master:
        # seconds, but a loaded CI machine has been seen to need more than 30.
        wait_for(lambda: self.answers(master) and replicas_online(self.client(master)) >= 1,
                 120, 0.1, what="the old master back as a replica, in sync")
        wait_for(lambda: all(self._sees_everyone(p) for p in self.sentinel_ports), 60, 0.1,
                 what="the sentinels to see the replica")

    def flush(self) -> None:
        self.master().flushall()


class ClusterNodes(_Processes):
    """A Redis Cluster of `masters` masters, each with `replicas` replicas, made
    with `redis-cli --cluster create`."""

    def __init__(self, masters: int = 3, replicas: int = 1):
        super().__init__("mpq-cluster-")
        self.replicas = replicas
        n = masters * (1 + replicas)
        for attempt in range(START_TRIES):
            ports = free_ports(2 * n)
            self.ports = ports[:n]
            # The bus port defaults to port + 10000, past 65535 for most free ports.
            self.bus_ports = dict(zip(self.ports, ports[n:]))
            try:
                self._start(replicas)
                return
            except NodeExited:
                # A port chosen free was taken by another process before its node bound
                # it: start again on other ports (the test machine's, not the code's, race).
                self.stop(keep_dir=True)
                if attempt == START_TRIES - 1:
                    self.stop()
                    raise
            except BaseException:
                self.stop()
                raise

    def _start(self, replicas: int) -> None:
        for port in self.ports:
            self.node(port)
        wait_for(lambda: self._exited() or all(self.answers(p) for p in self.ports), 30, what="the cluster nodes")
        if self._exited():
            raise NodeExited(f"cluster node(s) on {self._exited()} exited at start")
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", str(replicas), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        self.wait_healthy()

    def node(self, port: int) -> None:
        self.spawn(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                   "--cluster-port", str(self.bus_ports[port]),
                   "--cluster-node-timeout", str(NODE_TIMEOUT_MS), *DATA_NODE,
                   "--cluster-require-full-coverage", "yes")

    def wait_healthy(self, timeout: float = 30) -> None:
        def ok():
            for port in self.ports:
                if not self.answers(port):
                    continue
                info = self.client(port).execute_command("CLUSTER INFO")
                state = info.get("cluster_state") if isinstance(info, dict) else info
                if "ok" not in str(state):
                    return False
            return self._all_slots_served() and all(
                replicas_online(self.client(p)) >= self.replicas for p in self.masters())
        wait_for(ok, timeout, 0.1, what="the cluster to be ok, every replica in sync")

    def _all_slots_served(self) -> bool:
        try:
            slots = self.client(self.live_port()).execute_command("CLUSTER SLOTS")
        except redis.exceptions.RedisError:
            return False
        return sum(int(end) - int(start) + 1 for start, end, *_ in slots) == 16384

    def live_port(self) -> int:
        return next(p for p in self.ports if self.answers(p))

    def url(self, query: str = "") -> str:
        return f"redis+cluster://{url_hosts(self.ports[:2])}" + (f"?{query}" if query else "")

    def masters(self) -> dict[int, tuple[int, int]]:
        """{port: (first slot, last slot)} of every master serving slots."""
        out = {}
        for start, end, master, *_ in self.client(self.live_port()).execute_command("CLUSTER SLOTS"):
            out.setdefault(int(master[1]), (int(start), int(end)))
        return out

    def owner(self, key: str) -> int:
        slot = self.client(self.live_port()).execute_command("CLUSTER KEYSLOT", key)
        for start, end, master, *_ in self.client(self.live_port()).execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1])
        raise AssertionError(f"no master serves the slot of {key}")

    def queue_names(self, count: int, prefix: str = "q") -> list[str]:
        """`count` queue names, each on a different master (as many as there are)."""
        names, used = [], set()
        for i in range(10000):
            name = f"{prefix}{i}"
            port = self.owner(f"mpq:{{{name}}}:")
            if port not in used:
                used.add(port)
                names.append(name)
                if len(names) == count:
                    return names
        raise AssertionError("not enough masters")

    def flush(self) -> None:
        for port in self.masters():
            self.client(port).flushall()

    def replica_of(self, master_port: int) -> int:
        for port in self.ports:
            if port != master_port and self.answers(port):
                info = self.client(port).info("replication")
                if info["role"] == "slave" and int(info["master_port"]) == master_port:
                    return port
        raise AssertionError(f"no replica of {master_port}")

    def wait_promoted(self, old_master: int, slot_key: str, timeout: float = 30) -> int:
        def moved():
            try:
                port = self.owner(slot_key)
            except (redis.exceptions.RedisError, AssertionError, StopIteration):
                return None
            return port if port != old_master and self._all_slots_served() else None
        return wait_for(moved, timeout, 0.1, what="a replica promoted in the cluster")

    def restart_as_replica(self, port: int) -> None:
        """A killed master comes back (its nodes.conf kept) and rejoins as a replica."""
        self.node(port)
        wait_for(lambda: self.answers(port), 10, what="the node back")
        self.wait_healthy(120)       # a full resync: seconds, more on a loaded machine

    def migrate_slot(self, key: str, to_port: int, batch: int = 10) -> None:
        """Move the slot of `key` to `to_port` by hand, key batch by key batch, as
        `redis-cli --cluster reshard` does (IMPORTING, MIGRATING, MIGRATE, NODE)."""
        src_port = self.owner(key)
        src, dst = self.client(src_port), self.client(to_port)
        slot = src.execute_command("CLUSTER KEYSLOT", key)
        src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
            time.sleep(0.01)   # ok: spreads the migration over time, so the service runs during it
        # the new owner first, then the old, then the rest (as redis-cli does)
        for port in [to_port, src_port, *(p for p in self.masters() if p not in (to_port, src_port))]:
            self.client(port).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
