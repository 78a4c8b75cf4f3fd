"""The small real applications under apps/ (Django: shop, Flask: blog, FastAPI:
signup), on sys.path here and in the services' workers (`path:`)."""
import sys
from pathlib import Path

import pytest

from mpqueue import Client
from mpqueue.producer import default
from mpqueue.producer.default import set_default_client

APPS = Path(__file__).parent / "apps"
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))


@pytest.fixture(autouse=True)
def no_leftover_framework_clients():
    """A test's Flask apps and Django settings stop being where task.push() goes."""
    sources = getattr(default, "_sources", [])
    saved = list(sources)
    yield
    sources[:] = saved


@pytest.fixture
def producer(redis_url):
    """This process's default client (what task.push() uses), unset afterwards."""
    client = Client(redis_url)
    set_default_client(client)
    yield client
    set_default_client(None)
    client.close()


def app_service(service, framework, imports, queue, **settings):
    """A real `mpqueue run` serving one queue of an app under apps/."""
    config = {"path": [str(APPS)], "imports": imports, "queues": {queue: {"workers": 1, **settings}}}
    if framework is not None:
        config["framework"] = framework
    return service(config)
