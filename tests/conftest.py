import pytest

from tests.support import RedisServer, Service


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sentinel_group():
    """A master, a replica and three sentinels, for the whole session (tests that
    fail it over leave it with a master and a replica again)."""
    from tests.redis_deployments import SentinelGroup
    group = SentinelGroup()
    yield group
    group.stop()


@pytest.fixture(scope="session")
def redis_cluster():
    """Three masters with a replica each, for the whole session."""
    from tests.redis_deployments import ClusterNodes
    cluster = ClusterNodes(masters=3, replicas=1)
    yield cluster
    cluster.stop()


@pytest.fixture
def sentinel_url(sentinel_group):
    sentinel_group.flush()
    return sentinel_group.url()


@pytest.fixture
def cluster_url(redis_cluster):
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    return redis_cluster.url()


@pytest.fixture
def redis_url(redis_server):
    """A clean database on our own server for each test."""
    redis_server.client.flushall()
    return redis_server.url


@pytest.fixture
def rdb(redis_server, redis_url):
    return redis_server.client


@pytest.fixture
def broker_url(redis_url):
    """The service's broker; modules that run on every broker override this."""
    return redis_url


@pytest.fixture
def service(tmp_path, redis_url, broker_url):
    services = []

    def make(config=None, **kw):
        kw.setdefault("broker", broker_url)
        svc = Service(tmp_path / f"s{len(services)}", redis_url, config, **kw)
        services.append(svc)
        return svc
    yield make
    for svc in services:
        svc.stop()
