# Run with MPQUEUE_BROKER=sync:// in the environment (it wins over
# MPQUEUE_CONFIG): `MPQUEUE_BROKER=sync:// pytest`. The job runs inline before
# the handler's apush() returns.
import os

import redis
from fastapi.testclient import TestClient

from signup.api import app


def test_signing_up_sends_the_welcome():
    response = TestClient(app).post("/signup", params={"email": "ada@example.org"})
    assert response.status_code == 200
    sent = redis.Redis.from_url(os.environ["MPQ_TEST_REDIS"]).lrange("signup:sent", 0, -1)
    assert sent == [b"ada@example.org"]
