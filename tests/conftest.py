import pytest

from tests.support import RedisServer, Service


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


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
