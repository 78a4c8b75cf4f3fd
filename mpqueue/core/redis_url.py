"""What a Redis broker URL means: one server, a master found through Sentinel, or
a Cluster, and the durability of pushes. One home for the rule, so `mpqueue
check`, the broker and the CLIs read a URL the same way; every URL accepted
here must work. Errors are ValueError with one line, never the password.

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]            (rediss:// with TLS)
    unix://[[USER]:PASSWORD@]/PATH/TO/redis.sock[?db=N]
    redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]
    redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]
    (rediss+sentinel://, rediss+cluster://: the same over TLS)

PASSWORD is the Redis servers'; sentinels that want their own take
?sentinel_password= (and ?sentinel_username=). Any of them may carry
?wait_replicas=N&wait_timeout=SECONDS: a push returns only once N replicas have
its job (Redis WAIT), and fails with NotReplicated when they could not in time.
"""
from __future__ import annotations

import dataclasses
import math
from urllib.parse import parse_qs, unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = SINGLE_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES

# Query options redis-py passes through for one server (timeouts and keepalive are mpqueue's own).
_SINGLE_OPTIONS = ("db", "password", "username", "client_name")
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_DURABILITY = ("wait_replicas", "wait_timeout")
_SENTINEL_OPTIONS = ("sentinel_password", "sentinel_username", "client_name")
_CLUSTER_OPTIONS = ("client_name",)
MAX_WAIT_REPLICAS = 100
MAX_WAIT_TIMEOUT = 60.0
DEFAULT_WAIT_TIMEOUT = 1.0


@dataclasses.dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis broker URL."""
    kind: str                               # "single", "sentinel" or "cluster"
    url: str                                # single: the URL for redis-py, our own options removed
    nodes: tuple = ()                       # sentinel, cluster: (host, port) seeds
    master: str = ""                        # sentinel: the monitored master's name
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: dict | None = None                 # None: plain TCP; else redis-py's ssl_* options
    sentinel_auth: dict = dataclasses.field(default_factory=dict, repr=False)
    client_name: str | None = None
    wait_replicas: int = 0                  # 0: a push returns once the master has it
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT

    @property
    def sharded(self) -> bool:
        """Wake-ups and hand-offs go over sharded pub/sub, on the queue's own shard."""
        return self.kind == "cluster"


def is_redis(url) -> bool:
    return isinstance(url, str) and urlsplit(url).scheme in SCHEMES


def parse(url: str) -> RedisTarget:
    """The target of a Redis URL, or ValueError with one line saying what is expected."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("a valid URL") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    durability = _durability(query)
    if parts.scheme in SINGLE_SCHEMES:
        return _single(url, parts, query, durability)
    if parts.scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        raise ValueError(f"a Redis URL with scheme {', '.join(SCHEMES)}")
    kind = "sentinel" if parts.scheme in SENTINEL_SCHEMES else "cluster"
    allowed = (_SENTINEL_OPTIONS if kind == "sentinel" else _CLUSTER_OPTIONS) + _DURABILITY
    allowed += _TLS_OPTIONS if parts.scheme.startswith("rediss") else ()
    _only(parts.scheme, query, allowed)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, password = _userinfo(userinfo)
    nodes = _hosts(parts.scheme, hostlist)
    common = dict(nodes=nodes, username=username, password=password, client_name=_last(query, "client_name"),
                  tls=_tls(parts.scheme, query), **durability)
    path = [p for p in parts.path.split("/") if p]
    if kind == "cluster":
        if path:
            raise ValueError(f"a {parts.scheme}:// URL with no path (a Cluster has one database and no "
                             f"master name), e.g. {parts.scheme}://10.0.0.1:7000,10.0.0.2:7000")
        return RedisTarget("cluster", url, **common)
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"a {parts.scheme}:// URL naming the master after the sentinels, e.g. "
                         f"{parts.scheme}://10.0.0.1:26379,10.0.0.2:26379/mymaster/0")
    auth = {k: v for k, v in (("password", _last(query, "sentinel_password")),
                              ("username", _last(query, "sentinel_username"))) if v is not None}
    return RedisTarget("sentinel", url, master=unquote(path[0]), db=int(path[1]) if len(path) == 2 else 0,
                       sentinel_auth=auth, **common)


def _single(url, parts, query, durability) -> RedisTarget:
    allowed = _SINGLE_OPTIONS + _DURABILITY + (_TLS_OPTIONS if parts.scheme == "rediss" else ())
    _only(parts.scheme, query, allowed)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL with the socket's path, e.g. unix:///run/redis/redis.sock?db=0")
    else:
        try:
            parts.port  # noqa: B018 - parsed lazily; raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"a {parts.scheme}:// URL with a valid port") from None
        if not parts.hostname:
            raise ValueError(f"a {parts.scheme}:// URL with a host, e.g. {parts.scheme}://127.0.0.1:6379/0")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"a {parts.scheme}:// URL whose path is a database number, "
                             f"e.g. {parts.scheme}://host:6379/0")
    db = _last(query, "db") or ""
    if db and not db.isdigit():
        raise ValueError("a Redis URL whose db option is a database number")
    # redis-py refuses options it does not know: hand it the URL without ours.
    # (By hand, not urlunsplit: that would turn unix:///path into unix:/path.)
    if any(k in query for k in _DURABILITY):
        kept = "&".join(p for p in parts.query.split("&") if p and p.split("=", 1)[0] not in _DURABILITY)
        url = url.split("?", 1)[0] + (f"?{kept}" if kept else "")
    return RedisTarget("single", url, **durability)


def _durability(query) -> dict:
    replicas, timeout = _last(query, "wait_replicas"), _last(query, "wait_timeout")
    out = {}
    if replicas is not None:
        if not replicas.isdigit() or int(replicas) > MAX_WAIT_REPLICAS:
            raise ValueError(f"wait_replicas: a number of replicas from 0 to {MAX_WAIT_REPLICAS}")
        out["wait_replicas"] = int(replicas)
    if timeout is not None:
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = math.nan
        if not (0 < seconds <= MAX_WAIT_TIMEOUT):        # NaN fails too
            raise ValueError(f"wait_timeout: a number of seconds above 0, at most {MAX_WAIT_TIMEOUT:g}")
        out["wait_timeout"] = seconds
    return out


def _only(scheme, query, allowed) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise ValueError(f"a {scheme}:// URL whose query options are among {', '.join(allowed)} "
                         f"(not {', '.join(unknown)})")


def _last(query, key):
    values = query.get(key)
    return values[-1] if values else None


def _userinfo(userinfo: str):
    if not userinfo:
        return None, None
    user, sep, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) if sep else None


def _hosts(scheme: str, hostlist: str) -> tuple:
    example = "10.0.0.1:26379,10.0.0.2:26379" if "sentinel" in scheme else "10.0.0.1:7000,10.0.0.2:7000"
    nodes = []
    for item in hostlist.split(","):
        host, sep, port = item.strip().rpartition(":")
        host = host.strip("[]")                     # an IPv6 address in brackets
        if not (host and sep and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"a {scheme}:// URL listing HOST:PORT of each seed node, e.g. {scheme}://{example}")
        nodes.append((host, int(port)))
    return tuple(nodes)


def _tls(scheme: str, query) -> dict | None:
    if not scheme.startswith("rediss"):
        return None
    options = {k: _last(query, k) for k in _TLS_OPTIONS if _last(query, k) is not None}
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = options["ssl_check_hostname"].lower() in ("1", "true", "yes")
    return options
