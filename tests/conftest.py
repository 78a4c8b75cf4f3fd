import pytest

from mpqueue import Client
from tests.support import BROKERS, RedisServer, Service, broker_url_for


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


def pytest_generate_tests(metafunc):
    """A test marked each_broker (`pytestmark = pytest.mark.each_broker`) that uses
    broker_url runs once per broker, unless it names its own (parametrize, indirect)."""
    if "broker_url" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("each_broker") is None:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "broker_url" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    metafunc.parametrize("broker_url", BROKERS, indirect=True)


@pytest.fixture
def broker_url(request):
    """The service's broker: Redis, or for a test marked each_broker, each of BROKERS."""
    if not hasattr(request, "param"):
        return request.getfixturevalue("redis_url")
    return broker_url_for(request)


@pytest.fixture
def client(broker_url):
    c = Client(broker_url)
    yield c
    c.close()


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
