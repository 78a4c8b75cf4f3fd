"""Beyond one Redis: a real `mpqueue run` on a Sentinel group and on a Redis
Cluster started by the tests (tests/redis_deployments.py), through failovers
and a slot migration, with pushes that WAIT for a replica. The jobs record
their runs in the session's plain Redis, which no failover touches."""
from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time

import pytest

from mpqueue import Client
from mpqueue.brokers import BrokerError
from tests.redis_deployments import ipv6_loopback
from tests.support import free_port, wait_for

pytestmark = pytest.mark.slow
DURABLE = "wait_replicas=1&wait_timeout=2"


class Producer(threading.Thread):
    """Pushes `count` jobs, one tag each, as an application would: a push that
    raised (the master gone, a replica not reached) is pushed again, so every
    tag it was asked for must run; a tag may run twice when a push that raised
    had in fact landed. `acked`: tags whose push returned."""

    def __init__(self, url: str, queues: list[str], count: int, prefix: str = "t"):
        super().__init__(daemon=True)
        self.url, self.queues, self.count, self.prefix = url, queues, count, prefix
        self.acked, self.retries, self.errors = [], 0, collections.Counter()

    def run(self):
        client = Client(self.url)
        try:
            for i in range(self.count):
                tag = f"{self.prefix}{i}"
                deadline = time.monotonic() + 60
                while True:
                    try:
                        client.push(self.queues[i % len(self.queues)], "testtasks:record", args=[tag])
                        break
                    except BrokerError as exc:
                        self.retries += 1
                        self.errors[type(exc).__name__] += 1
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)  # ok: an application's retry pause, not a wait for an event
                self.acked.append(tag)
        finally:
            client.close()


def ran(rdb) -> collections.Counter:
    return collections.Counter(line.split()[0] for line in rdb.lrange("test:runs", 0, -1))


def every_tag_ran(rdb, tags, timeout=60):
    wait_for(lambda: set(tags) <= set(ran(rdb)), timeout, 0.1,
             what=f"all {len(tags)} jobs to run (missing: {len(set(tags) - set(ran(rdb)))})")
    return ran(rdb)


def mpqctl(url, *args):
    return subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--broker", url, *args],
                          capture_output=True, text=True, timeout=60)


# -- Sentinel
def test_a_service_on_sentinel_runs_jobs_and_mpqctl_reads_it(service, sentinel_url, rdb):
    svc = service({"queues": {"default": {"workers": 2}}}, broker=sentinel_url).start()
    client = Client(sentinel_url)
    for i in range(50):
        client.push("default", "testtasks:record", args=[f"j{i}"])
    assert every_tag_ran(rdb, [f"j{i}" for i in range(50)]) == {f"j{i}": 1 for i in range(50)}
    status = mpqctl(sentinel_url, "status")
    assert status.returncode == 0 and "default" in status.stdout, status.stderr
    client.close()
    assert svc.stop() == 0


def test_sigkill_of_the_master_loses_no_durable_push(service, sentinel_group, sentinel_url, rdb):
    url = sentinel_group.url(query=DURABLE)
    svc = service({"queues": {"default": {"workers": 2}}}, broker=url).start()
    producer = Producer(url, ["default"], 3000)
    producer.start()
    wait_for(lambda: len(producer.acked) >= 1000, 60, 0.05, what="a thousand pushes")
    old = sentinel_group.master_port()
    sentinel_group.kill(old)                   # a crash: what was not replicated is gone
    sentinel_group.wait_promoted(old)
    sentinel_group.restore()                   # a replica again, so durable pushes can succeed
    producer.join(120)
    assert not producer.is_alive() and len(producer.acked) == 3000
    counts = every_tag_ran(rdb, producer.acked, 90)
    reruns = sum(counts.values()) - len(counts)
    # Re-runs come only from what the failover cut short: jobs reserved or acked on
    # the old master, and pushes that raised but landed. Bounded by the workers' prefetch.
    assert reruns <= 50 + producer.retries, (reruns, producer.retries)
    assert "broker unreachable" in svc.log()          # the outage was seen and said...
    assert svc.proc.poll() is None                     # ...and lived through, no restart
    status = mpqctl(url, "status")
    assert status.returncode == 0, status.stderr
    assert svc.stop() == 0


def test_a_planned_failover_loses_no_job(service, sentinel_group, sentinel_url, rdb):
    url = sentinel_group.url(query=DURABLE)
    svc = service({"queues": {"default": {"workers": 2, "concurrency": 4}}}, broker=url).start()
    producer = Producer(url, ["default"], 2000)
    producer.start()
    wait_for(lambda: len(producer.acked) >= 500, 60, 0.05, what="five hundred pushes")
    sentinel_group.failover()
    producer.join(120)
    assert len(producer.acked) == 2000
    counts = every_tag_ran(rdb, producer.acked, 90)
    assert sum(counts.values()) - len(counts) <= 50 + producer.retries
    client = Client(sentinel_group.url())
    client.push("default", "testtasks:record", args=["after"])   # a new producer finds the new master
    every_tag_ran(rdb, ["after"])
    client.close()
    assert svc.stop() == 0


def test_a_failover_with_a_backlog_reruns_only_what_was_in_flight(service, sentinel_group, sentinel_url, rdb):
    # After SENTINEL FAILOVER the old master keeps taking writes for seconds, until
    # Sentinel demotes it and it resyncs from the new one: every job it hands out
    # in between waits again on the new master. Durable workers run a job only once
    # a replica knows it is reserved, so only the jobs in their hands run twice.
    url = sentinel_group.url(query=DURABLE)
    svc = service({"queues": {"default": {"workers": 2, "concurrency": 4}}}, broker=url).start()
    client = Client(url)
    tags = [f"b{i}" for i in range(3000)]
    client.push_many("default", ({"task": "testtasks:sleep_record", "args": [t, 0.01]} for t in tags))
    client.close()
    wait_for(lambda: rdb.llen("test:runs") >= 200, 60, 0.01, what="the backlog to start draining")
    old = sentinel_group.master_port()
    new = sentinel_group.failover()
    wait_for(lambda: sentinel_group.client(old).execute_command("ROLE")[0] == "slave", 60, 0.1,
             what="Sentinel to demote the old master")
    master = Client(sentinel_group.url())         # connects after the demotion: the new master
    assert master.broker.client.connection_pool.get_master_address()[1] == new

    def settled():
        c = master.broker.counts("default")
        return c["ready"] == c["scheduled"] == c["running"] == 0 and set(tags) <= set(ran(rdb))
    wait_for(settled, 120, 0.1, what="every job of the backlog to run on the new master")
    reruns = sum(ran(rdb).values()) - len(tags)
    assert reruns <= 50, reruns           # 8 slots, their acks not yet sent, a little prefetch
    assert "replicas" in svc.log()        # the workers saw their reserves go unconfirmed, and said so
    master.close()
    assert svc.stop() == 0


def test_a_push_that_no_replica_confirms_raises_not_replicated(sentinel_group, sentinel_url):
    from mpqueue.brokers import NotReplicated
    client = Client(sentinel_group.url(query="wait_replicas=2&wait_timeout=0.2"))   # the group has one
    with pytest.raises(NotReplicated, match="reached 1 of 2 replicas within 0.2 s"):
        client.push("default", "testtasks:record", args=["x"])
    assert client.broker.counts("default")["ready"] == 1      # the master has it: a retry may duplicate
    client.close()


# -- Cluster
@pytest.fixture
def three_queues(redis_cluster, cluster_url):
    return redis_cluster.queue_names(3)


def test_queues_on_different_masters_run_every_job_exactly_once(service, redis_cluster, cluster_url,
                                                                three_queues, rdb):
    owners = {redis_cluster.owner(f"mpq:{{{q}}}:") for q in three_queues}
    assert len(owners) == 3
    svc = service({"queues": {q: {"workers": 2} for q in three_queues}}, broker=cluster_url).start()
    client = Client(cluster_url)
    tags = []
    for i in range(600):
        tags.append(f"c{i}")
        client.push(three_queues[i % 3], "testtasks:record", args=[tags[-1]])
        if i % 50 == 0:          # let the workers go idle now and then: pushes then hand jobs over
            wait_for(lambda: len(ran(rdb)) == len(tags), 20, what="the workers to catch up")
    counts = every_tag_ran(rdb, tags)
    assert sum(counts.values()) == len(tags), [t for t, n in counts.items() if n > 1][:10]
    status = mpqctl(cluster_url, "status")
    assert status.returncode == 0 and all(q in status.stdout for q in three_queues), status.stderr
    client.close()
    assert svc.stop() == 0


def test_a_master_failover_in_the_cluster_loses_no_durable_push(service, redis_cluster, cluster_url,
                                                                 three_queues, rdb):
    url = redis_cluster.url(DURABLE)
    svc = service({"queues": {q: {"workers": 1} for q in three_queues}}, broker=url).start()
    producer = Producer(url, three_queues, 2400)
    producer.start()
    wait_for(lambda: len(producer.acked) >= 600, 60, 0.05, what="six hundred pushes")
    victim = redis_cluster.owner(f"mpq:{{{three_queues[0]}}}:")
    redis_cluster.kill(victim)
    redis_cluster.wait_promoted(victim, f"mpq:{{{three_queues[0]}}}:")
    redis_cluster.restart_as_replica(victim)
    producer.join(120)
    assert len(producer.acked) == 2400
    counts = every_tag_ran(rdb, producer.acked, 90)
    assert sum(counts.values()) - len(counts) <= 50 + producer.retries
    assert svc.proc.poll() is None
    assert svc.stop() == 0


def test_a_slot_migration_during_a_run_loses_and_duplicates_nothing(service, redis_cluster, cluster_url,
                                                                    three_queues, rdb):
    queue = three_queues[0]
    key = f"mpq:{{{queue}}}:"
    svc = service({"queues": {queue: {"workers": 2}}}, broker=cluster_url).start()
    producer = Producer(cluster_url, [queue], 1500)
    producer.start()
    wait_for(lambda: len(producer.acked) >= 300, 60, 0.05, what="three hundred pushes")
    source = redis_cluster.owner(key)
    target = next(p for p in redis_cluster.masters() if p != source)
    redis_cluster.migrate_slot(key, target, batch=2)
    assert redis_cluster.owner(key) == target
    producer.join(120)
    assert producer.retries == 0 and len(producer.acked) == 1500      # a migration is no outage to a producer
    counts = every_tag_ran(rdb, producer.acked)
    assert sum(counts.values()) == 1500, [t for t, n in counts.items() if n > 1][:10]
    assert svc.stop() == 0


# -- IPv6 hosts in the URL (urllib.parse on builds with the fix for CVE-2025-0938 refuses a '[' after other text)
@pytest.fixture
def ipv6():
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine")


def runs_jobs_through(url, service, rdb, queues):
    svc = service({"queues": {q: {"workers": 1} for q in queues}}, broker=url).start()
    client = Client(url)
    tags = [f"v{i}" for i in range(30)]
    for i, tag in enumerate(tags):
        client.push(queues[i % len(queues)], "testtasks:record", args=[tag])
    assert every_tag_ran(rdb, tags) == {tag: 1 for tag in tags}
    status = mpqctl(url, "status")
    assert status.returncode == 0 and all(q in status.stdout for q in queues), status.stderr
    client.close()
    assert svc.stop() == 0


def test_a_sentinel_listed_as_ipv6_after_a_dead_one_finds_the_master(ipv6, service, sentinel_group, sentinel_url,
                                                                     rdb):
    # Given a URL whose first sentinel is gone, so that every process asks the [::1] one after it
    url = (f"redis+sentinel://127.0.0.1:{free_port()},[::1]:{sentinel_group.sentinel_ports[1]}"
           f"/{sentinel_group.master_name}/0")
    # Then a service, its producer and mpqctl work through it
    runs_jobs_through(url, service, rdb, ["default"])


def test_a_cluster_seed_listed_as_ipv6_after_a_dead_one_maps_the_cluster(ipv6, service, redis_cluster, cluster_url,
                                                                         three_queues, rdb):
    url = f"redis+cluster://127.0.0.1:{free_port()},[::1]:{redis_cluster.ports[0]}"
    runs_jobs_through(url, service, rdb, three_queues)


def test_async_pushes_reach_a_sentinel_master_and_a_cluster(sentinel_url, cluster_url):
    import asyncio

    async def push_fifty(url):
        client = Client(url)
        try:
            return await asyncio.gather(*(client.apush("default", "t:f", args=[i]) for i in range(50)))
        finally:
            await client.aclose()
    for url in (sentinel_url, cluster_url, sentinel_url + "?wait_replicas=1"):
        ids = asyncio.run(push_fifty(url))
        client = Client(url)
        assert len(set(ids)) == 50 and all(client.broker.find("default", i)["state"] == "ready" for i in ids)
        client.broker.clean("default")
        client.close()


def test_a_wake_up_subscription_is_never_made_on_a_replica(sentinel_group, sentinel_url):
    # A replica delivers its master's messages, but the master's receiver count (which
    # a hand-off trusts) does not include its subscribers: a waiter there would run a
    # job the push also enqueued. So the waiter refuses a replica, and tries again.
    from mpqueue.brokers import open_broker
    replica = next(p for p in sentinel_group.data_ports if p != sentinel_group.master_port())
    broker = open_broker(f"redis://127.0.0.1:{replica}/0")
    try:
        with pytest.raises(BrokerError, match="did not reach a master"):
            broker.waiter("default", "c1")
    finally:
        broker.close()
    master = open_broker(sentinel_url)
    try:
        master.waiter("default", "c1").close()          # the master is fine
    finally:
        master.close()
