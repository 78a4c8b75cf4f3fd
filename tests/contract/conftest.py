"""One contract suite for every broker: a backend that passes it is a broker.
The same tests run, unchanged, against each URL scheme below."""
import pytest

from mpqueue.brokers import open_broker


@pytest.fixture(params=["redis", "sqlite", "sentinel", "cluster"])
def broker(request, tmp_path):
    if request.param in ("redis", "sentinel", "cluster"):
        url = request.getfixturevalue(f"{request.param}_url")
    else:
        url = f"sqlite://{tmp_path}/contract.db"
    b = open_broker(url)
    yield b
    b.close()
