"""One contract suite for every broker: a backend that passes it is a broker."""
import pytest

from mpqueue.brokers import open_broker


@pytest.fixture(params=["redis"])
def broker(request, redis_url):
    b = open_broker(redis_url)
    yield b
    b.close()
