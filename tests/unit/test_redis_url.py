"""Pure logic of the Redis URL forms (core/redis_url.py), of the readers that cut
a URL with its split_url, and of the Cluster's redirect errors
(brokers/redis_nodes.py); the real deployments are in
tests/e2e/test_beyond_one_redis.py. Run on an interpreter with the fix for
CVE-2025-0938 (Debian 12's /usr/bin/python3) as well: .ci/run does."""
from urllib.parse import quote

import pytest
import redis

from mpqueue.brokers import open_broker
from mpqueue.brokers.redis_nodes import redirect_kind
from mpqueue.core import redis_url
from mpqueue.core.names import is_inline, redact, redact_text


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


# Every URL form the docs (docs/howto/beyond-one-redis.md) and core/redis_url.py document, as (URL, what it means).
SENTINEL_FORMS = [
    ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0",
     (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)), "mymaster", 0, None, None),
    ("redis+sentinel://10.0.0.1:26379/mymaster/0?wait_replicas=1&wait_timeout=0.5",
     (("10.0.0.1", 26379),), "mymaster", 0, None, None),
    ("redis+sentinel://h1:26379/mymaster", (("h1", 26379),), "mymaster", 0, None, None),
    ("redis+sentinel://app:pw@h1:26379,h2:26380/m/3", (("h1", 26379), ("h2", 26380)), "m", 3, "app", "pw"),
    ("redis+sentinel://:pw@h1:26379/m/1", (("h1", 26379),), "m", 1, None, "pw"),
    ("rediss+sentinel://h1:26379/m?ssl_ca_certs=/etc/ssl/ca.pem", (("h1", 26379),), "m", 0, None, None),
    ("redis+sentinel://h1:26379/m?sentinel_password=sp&sentinel_username=su", (("h1", 26379),), "m", 0, None, None),
]
CLUSTER_FORMS = [
    ("redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000",
     (("10.0.0.1", 7000), ("10.0.0.2", 7000), ("10.0.0.3", 7000)), None, None),
    ("redis+cluster://app:pw@h1:7000", (("h1", 7000),), "app", "pw"),
    ("rediss+cluster://:pw@h1:7000,h2:7001/?ssl_cert_reqs=required&wait_replicas=1", (("h1", 7000), ("h2", 7001)),
     None, "pw"),
]
# (URL, the URL redis-py gets: our own options gone, the user-info percent-encoded)
SINGLE_FORMS = [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://localhost", "redis://localhost"),
    ("redis://h:6379/3?password=p&client_name=orders", "redis://h:6379/3?password=p&client_name=orders"),
    ("redis://app:pw@h:6379/2", "redis://app:pw@h:6379/2"),
    ("redis://:pw@h/1?wait_replicas=1", "redis://:pw@h/1"),
    ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
    ("redis://:pw@[::1]/0", "redis://:pw@[::1]/0"),
    ("rediss://h:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/ca.pem",
     "rediss://h:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/ca.pem"),
    ("unix:///run/redis/redis.sock", "unix:///run/redis/redis.sock"),
    ("unix://:pw@/run/redis/redis.sock?db=2", "unix://:pw@/run/redis/redis.sock?db=2"),
]


@pytest.mark.parametrize("url, nodes, master, db, username, password", SENTINEL_FORMS)
def test_every_documented_sentinel_form_parses(url, nodes, master, db, username, password):
    t = redis_url.parse(url)
    assert (t.kind, t.nodes, t.master, t.db, t.username, t.password) == ("sentinel", nodes, master, db,
                                                                         username, password)


@pytest.mark.parametrize("url, nodes, username, password", CLUSTER_FORMS)
def test_every_documented_cluster_form_parses(url, nodes, username, password):
    t = redis_url.parse(url)
    assert (t.kind, t.nodes, t.username, t.password) == ("cluster", nodes, username, password)


@pytest.mark.parametrize("url, for_redis_py", SINGLE_FORMS)
def test_every_documented_single_server_form_reaches_redis_py_as_it_means(url, for_redis_py):
    # Given a one-server URL; When parsed, Then redis-py gets it without our options...
    t = redis_url.parse(url)
    assert (t.kind, t.url) == ("single", for_redis_py)
    # ...and redis-py (urllib.parse inside) reads it on this interpreter's patch level
    redis.connection.parse_url(t.url)


@pytest.mark.parametrize("scheme, example", [("redis+sentinel", "/m"), ("redis+cluster", "")])
@pytest.mark.parametrize("hosts, nodes", [
    ("[::1]:1,h2:2,h3:3", (("::1", 1), ("h2", 2), ("h3", 3))),
    ("h1:1,[::1]:2,h3:3", (("h1", 1), ("::1", 2), ("h3", 3))),
    ("h1:1,h2:2,[2001:db8::7]:3", (("h1", 1), ("h2", 2), ("2001:db8::7", 3))),
    ("[::1]:1,[fe80::1]:2", (("::1", 1), ("fe80::1", 2))),
    ("[::ffff:10.0.0.1]:1", (("::ffff:10.0.0.1", 1),)),
    ("h1:1, [::1]:2 ,h3:3", (("h1", 1), ("::1", 2), ("h3", 3))),
])
def test_an_ipv6_host_may_stand_anywhere_in_the_list(scheme, example, hosts, nodes):
    # (urllib.parse.urlsplit with the CVE-2025-0938 fix refuses any text before a '[')
    assert redis_url.parse(f"{scheme}://u:pw@{hosts}{example}").nodes == nodes


@pytest.mark.parametrize("password", ["p[w]", "p]w", "a:b:c", "p!$&'()*+;=~w", "é€", "p w"])
def test_a_password_may_hold_odd_characters_written_as_they_are(password):
    # Given characters a URL's user-info may hold unencoded (and ones only redis-py never minded)
    single = redis_url.parse(f"redis://app:{password}@[::1]:6379/0")
    sentinel = redis_url.parse(f"redis+sentinel://app:{password}@h:1,[::1]:2/m")
    # Then every reader gets the password itself
    assert redis.connection.parse_url(single.url)["password"] == password
    assert sentinel.password == password


@pytest.mark.parametrize("password", ["p/w", "p?w", "p#w", "p@w", "p,w", "p%w", "%41", "p[w]:@/?#%,"])
def test_a_password_may_hold_anything_percent_encoded(password):
    encoded = quote(password, safe="")
    single = redis_url.parse(f"redis://app:{encoded}@h:6379/0?wait_replicas=1")
    assert redis.connection.parse_url(single.url)["password"] == password
    for url in (f"redis+sentinel://app:{encoded}@h:1,[::1]:2/m", f"redis+cluster://app:{encoded}@[::1]:1,h:2"):
        assert redis_url.parse(url).password == password


SECRET = "Sup3rS3cret"
HOSTILE = [
    "", "redis", "redis:", "redis://", "redis:///0", "redis://:6379/0", "redis://h:/0", "redis://h:0/0",
    "redis://h:65536/0", "redis://h:-1/0", "redis://h:port/0", "redis://h:²/0", "redis://h:1:2/0", "redis://::1:6379/0",
    "redis://[::1/0", "redis://[::1]x:1/0", "redis://x[::1]:1/0", "redis://[zz]:1/0", "redis://[127.0.0.1]:1/0",
    "redis://]:1/0", "redis://h h:1/0", "redis://h:1,h2:2/0", "redis://h/x", "redis://h/0/1", "redis://h/²",
    "redis://h:1/0\n", "redis://h:1/0\r\nSET x y", "redis://h:1/0#frag", "redis://h/0?db=x", "redis://h/0?foo=1",
    "unix://", "unix:/run/redis.sock", "unix://host/run/redis.sock", "ftp://h/0", "sync://",
    f"redis://u:{SECRET}@/0", f"redis://u:{SECRET}@h:1@/0", f"redis://u:{SECRET}@@h:1/0",
    f"redis://u:{SECRET[:4]}@{SECRET[4:]}@h/0", f"redis://:{SECRET[:4]}/{SECRET[4:]}@h:1/0",
    f"redis://:{SECRET[:4]}?{SECRET[4:]}@h:1/0", f"redis://:{SECRET[:4]}#{SECRET[4:]}@h:1/0",
    f"redis://:{SECRET[:4]}?{SECRET[4:]}=1@h:1/0",
    "redis+sentinel://", "redis+sentinel:///m", "redis+sentinel://h1/m", "redis+sentinel://h1:/m",
    "redis+sentinel://h1:1,/m", "redis+sentinel://,h1:1/m", "redis+sentinel://h1:1,,h2:2/m",
    "redis+sentinel://h1:1,[::1]/m", "redis+sentinel://h1:1,[::1:2/m", "redis+sentinel://h1:1,::1:2/m",
    "redis+sentinel://h1:1,[::1]:2x/m", "redis+sentinel://h1:1,x[::1]:2/m", "redis+sentinel://h1:1,[zz]:2/m",
    "redis+sentinel://h1:1,h2:99999/m", "redis+sentinel://h1:1", "redis+sentinel://h1:1/m/x",
    "redis+sentinel://h1:1/m/0/1", "redis+sentinel://h1:1/m?db=1", f"redis+sentinel://h1:1,@h2:2/m",
    f"redis+sentinel://u:{SECRET}@h1:1,u:{SECRET}@h2:2/m", f"redis+sentinel://u:{SECRET},x@h1:1/m",
    "redis+cluster://", "redis+cluster://h:1,", "redis+cluster://h", "redis+cluster://h:1/0",
    "redis+cluster://[::1]", "redis+cluster://[::1]:1,[::2", "redis+cluster://h:1?db=1",
    "redis://h/0?wait_replicas=-1", "redis://h/0?wait_replicas=101", "redis://h/0?wait_replicas=²",
    "redis://h/0?wait_timeout=0", "redis://h/0?wait_timeout=nan", "redis://h/0?wait_timeout=61",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_a_url_that_could_not_work_is_refused_in_one_line_without_its_password(url):
    with pytest.raises(ValueError) as refused:
        redis_url.parse(url)
    message = str(refused.value)
    assert message and "\n" not in message
    assert not any(piece in message for piece in (SECRET, SECRET[:4], SECRET[4:]))


@pytest.mark.parametrize("url", [u for u in HOSTILE if SECRET[4:] in u])
def test_a_mistyped_password_is_redacted_wherever_the_url_is_shown(url):
    shown = redact(url)
    assert SECRET[:4] not in shown and SECRET[4:] not in shown


@pytest.mark.parametrize("url", [
    "redis://u:p@h:6379/0?x=1#f", "redis+cluster://h1:1,h2:2?a=b", "sqlite:///var/lib/q.db?synchronous=full",
    "sqlite:relative.db", "sqlite://rel/q.db", "sync://", "unix:///run/r.sock", "http://[::1]:9809/x",
    "redis://@h", "redis:h:1", "//h/p", "noscheme", "", "a b://c", "1redis://h",
])
def test_split_url_cuts_where_urlsplit_does_when_urlsplit_can(url):
    from urllib.parse import urlsplit
    parts, theirs = redis_url.split_url(url), urlsplit(url)
    assert (parts.scheme, parts.authority or "", parts.path, parts.query, parts.fragment or "") == tuple(theirs)
    assert (parts.username, parts.password) == (theirs.username, theirs.password)


@pytest.mark.parametrize("url", ["redis+sentinel://h1:1,[::1]:2/m", "redis+cluster://h1:1,[::1]:2,h3:3"])
def test_a_host_list_with_ipv6_inside_is_a_redis_url_to_every_reader(url, monkeypatch):
    # Given a URL that urllib.parse refuses on some patch levels
    import mpqueue.brokers.redis
    opened = []
    monkeypatch.setattr(mpqueue.brokers.redis, "RedisBroker", lambda url, **kw: opened.append(url))
    # Then each reader takes it for what it is
    assert redis_url.is_redis(url) and not is_inline(url)
    assert redact(url) == url
    open_broker(url)
    assert opened == [url]


def test_a_hostile_origin_header_is_a_mismatch_not_an_error():
    flask = pytest.importorskip("flask")
    from mpqueue.web.security import same_origin
    app = flask.Flask(__name__)
    for origin, same in [("http://x[::1]:9809", False), ("http://[::1", False), ("http://[zz]:1", False),
                         ("http://evil:9809", False), ("http://[::1]:9809", True)]:
        with app.test_request_context(headers={"Origin": origin, "Host": "[::1]:9809"}):
            assert same_origin() is same, origin
