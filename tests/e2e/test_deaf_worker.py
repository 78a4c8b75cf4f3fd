"""An idle worker whose wake-up connection died without a word (the Redis host
rebooted: no FIN, no RST reached it) notices within seconds, subscribes again
and takes the jobs pushed meanwhile, instead of hearing nothing until its 60 s
fallback check (or, with TCP's default keepalive, for hours).

Two network namespaces of the test's own, joined by a veth pair with
link-local addresses: the service in one, a durable redis-server in the other.
"Rebooting" the Redis host is: cut the link, kill Redis, destroy its namespace,
then bring up a new one with the same address and the same data. The test
itself reaches Redis over a Unix socket. No packet leaves the machine."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from mpqueue import Client
from tests.support import Service, free_port, wait_for

SERVICE_IP, REDIS_IP = "169.254.77.1", "169.254.77.2"


def ip(*args, ns=None):
    cmd = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, (cmd, done.stderr)


class Hosts:
    """The service's namespace and the Redis host's, and the link between them."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.service_ns, self.redis_ns, self.link = f"mpqsvc-{tag}", f"mpqredis-{tag}", f"mpq{tag}"
        self.dir = tempfile.mkdtemp(prefix="mpq-deaf-")
        self.socket, self.port, self.redis = os.path.join(self.dir, "redis.sock"), free_port(), None
        try:
            ip("netns", "add", self.service_ns)
            ip("link", "set", "lo", "up", ns=self.service_ns)
            self.boot_redis_host()
        except BaseException:
            self.close()          # a failed start leaves no server or namespace behind
            raise

    def boot_redis_host(self):
        ip("netns", "add", self.redis_ns)
        ip("link", "set", "lo", "up", ns=self.redis_ns)
        ip("link", "add", f"{self.link}a", "type", "veth", "peer", "name", f"{self.link}b")
        ip("link", "set", f"{self.link}a", "netns", self.service_ns)
        ip("link", "set", f"{self.link}b", "netns", self.redis_ns)
        for ns, dev, addr in ((self.service_ns, "a", SERVICE_IP), (self.redis_ns, "b", REDIS_IP)):
            ip("addr", "add", f"{addr}/30", "dev", f"{self.link}{dev}", ns=ns)
            ip("link", "set", f"{self.link}{dev}", "up", ns=ns)
        self.redis = subprocess.Popen(
            ["ip", "netns", "exec", self.redis_ns, "redis-server", "--bind", REDIS_IP, "--port", str(self.port),
             "--unixsocket", self.socket, "--unixsocketperm", "700", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", self.dir,
             "--protected-mode", "no"],     # reachable only over our own veth
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = None
        try:
            client = Client(self.unix_url)
            wait_for(lambda: _answers(client), 10, what="redis-server on its host")
        finally:
            if client is not None:
                client.close()

    def reboot_redis_host(self):
        """Gone without a word to anyone, then back with the same address and data."""
        ip("link", "set", f"{self.link}a", "down", ns=self.service_ns)
        self.redis.kill()
        self.redis.wait()
        ip("link", "del", f"{self.link}a", ns=self.service_ns)      # both ends of the pair go
        ip("netns", "del", self.redis_ns)          # its sockets vanish with it: no FIN, no RST
        self.boot_redis_host()

    @property
    def unix_url(self):
        return f"unix://{self.socket}?db=0"

    @property
    def tcp_url(self):
        return f"redis://{REDIS_IP}:{self.port}/0"

    def close(self):
        if self.redis is not None and self.redis.poll() is None:
            self.redis.kill()
            self.redis.wait()
        for ns in (self.redis_ns, self.service_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(client):
    try:
        client.broker.ping()
        return True
    except Exception:
        return False


@pytest.fixture
def hosts():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make network namespaces")
    probe = f"mpqprobe-{uuid.uuid4().hex[:6]}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        pytest.skip("network namespaces are not available here")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    h = Hosts()
    try:
        yield h
    finally:
        h.close()


def test_an_idle_worker_notices_its_redis_host_rebooted_and_takes_new_jobs(tmp_path, hosts):
    # Given an idle worker in the service's namespace, subscribed over TCP to Redis on its host
    svc = Service(tmp_path / "s", hosts.unix_url, {"queues": {"default": {"workers": 1}}}, broker=hosts.tcp_url)
    client = Client(hosts.unix_url)
    runs = lambda: client.broker.client.llen("test:runs")  # noqa: E731
    try:
        svc.start(prefix=("ip", "netns", "exec", hosts.service_ns))
        client.push("default", "testtasks:record", args=["before"])
        wait_for(lambda: runs() == 1, 20, what="a first job")
        # When the Redis host reboots, and a job is pushed once it is back
        hosts.reboot_redis_host()
        client.push("default", "testtasks:record", args=["after"])
        # Then the worker finds its connection dead, subscribes again and runs the job,
        # within seconds, not at its 60 s fallback check
        wait_for(lambda: runs() == 2, 30, what="the job pushed after the reboot")
        # And it hears wake-ups on its new subscription
        client.push("default", "testtasks:record", args=["later"])
        wait_for(lambda: runs() == 3, 10, what="a job pushed to the re-subscribed worker")
    finally:
        svc.stop()
        client.close()
