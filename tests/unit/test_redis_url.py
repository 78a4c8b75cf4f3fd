"""Pure logic of the Redis URL forms (core/redis_url.py) and of the Cluster's
redirect errors (brokers/redis_nodes.py); the real deployments are in
tests/e2e/test_beyond_one_redis.py."""
import pytest
import redis

from mpqueue.brokers.redis_nodes import redirect_kind
from mpqueue.core import redis_url
from mpqueue.core.names import redact, redact_text


def test_a_sentinel_url_names_its_sentinels_master_db_and_both_passwords():
    t = redis_url.parse("redis+sentinel://app:s3cret@10.0.0.1:26379,[::1]:26380/orders/2"
                        "?sentinel_password=sp&wait_replicas=1&wait_timeout=0.25")
    assert (t.kind, t.nodes, t.master, t.db) == ("sentinel", (("10.0.0.1", 26379), ("::1", 26380)), "orders", 2)
    assert (t.username, t.password, t.sentinel_auth) == ("app", "s3cret", {"password": "sp"})
    assert (t.wait_replicas, t.wait_timeout, t.tls, t.sharded) == (1, 0.25, None, False)


def test_a_cluster_url_lists_seeds_and_shards_its_wake_ups():
    t = redis_url.parse("rediss+cluster://:pw@h1:7000,h2:7001?ssl_check_hostname=true")
    assert (t.kind, t.nodes, t.password, t.sharded) == ("cluster", (("h1", 7000), ("h2", 7001)), "pw", True)
    assert t.tls == {"ssl_check_hostname": True} and t.wait_replicas == 0


def test_a_single_server_url_reaches_redis_py_without_our_options():
    t = redis_url.parse("redis://h:6379/0?client_name=x&wait_replicas=2&wait_timeout=1.5")
    assert (t.kind, t.url, t.wait_replicas, t.wait_timeout) == ("single", "redis://h:6379/0?client_name=x", 2, 1.5)


@pytest.mark.parametrize("url", ["redis+cluster://:pw@h1:1,h2:2", "redis+sentinel://u:pw@h1:1,h2:2/m?sentinel_password=pw"])
def test_passwords_in_the_new_urls_are_redacted(url):
    assert "pw" not in redact(url).replace("password", "")
    assert "pw" not in redact_text(f"error talking to {url}: refused").replace("password", "")


@pytest.mark.parametrize("make, kind", [
    (lambda: redis.exceptions.ResponseError("MOVED 3999 127.0.0.1:7001"), "MOVED"),
    (lambda: redis.exceptions.ResponseError("ASK 3999 127.0.0.1:7001"), "ASK"),
    (lambda: redis.exceptions.ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"), "TRYAGAIN"),
    (lambda: redis.exceptions.ResponseError("CLUSTERDOWN The cluster is down"), "CLUSTERDOWN"),
    (lambda: redis.exceptions.MovedError("3999 127.0.0.1:7001"), "MOVED"),       # redis-py strips the word
    (lambda: redis.exceptions.AskError("3999 127.0.0.1:7001"), "ASK"),
    (lambda: redis.exceptions.ResponseError("ERR unknown command"), None),
    (lambda: redis.exceptions.ResponseError("WRONGTYPE Operation against a key"), None),
    (lambda: redis.exceptions.ConnectionError("refused"), None),
])
def test_redirects_are_told_apart_from_other_errors(make, kind):
    assert redirect_kind(make()) == kind


@pytest.mark.parametrize("url, expected", [
    ("unix:///run/redis/redis.sock?db=2", "unix:///run/redis/redis.sock?db=2"),
    ("unix:///run/redis/redis.sock?wait_replicas=1", "unix:///run/redis/redis.sock"),
    ("unix:///run/redis/redis.sock?db=2&wait_timeout=1", "unix:///run/redis/redis.sock?db=2"),
])
def test_a_unix_socket_url_keeps_its_path(url, expected):
    assert redis_url.parse(url).url == expected
