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
A HOST may be an IPv6 address in brackets, [::1], anywhere in a list.

split_url() is also where every other reader of a URL (the config, redaction,
the SQLite broker, the dashboard's Origin check) cuts one into its parts: by
hand, because urllib.parse.urlsplit refuses a host list like h1:26379,[::1]:26380
on Python builds with the fix for CVE-2025-0938 (Debian 12's 3.11.2-6+deb12u6)
and takes it on others.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from urllib.parse import parse_qs, quote, unquote, unquote_plus

from .address import port_number

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


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")       # a DNS name or an IPv4 address; IPv6 goes in brackets
_OPTION_NAME = re.compile(r"[A-Za-z0-9_]+")


@dataclasses.dataclass(frozen=True)
class UrlParts:
    """SCHEME://AUTHORITY/PATH?QUERY#FRAGMENT, each part as written. AUTHORITY is
    [USERINFO@]HOSTS, HOSTS a comma-separated list for Sentinel and Cluster."""
    scheme: str                             # lower case; "" when the text has none
    authority: str | None                   # None: no "//" after the scheme
    path: str
    query: str
    fragment: str | None                    # None: no "#"

    @property
    def userinfo(self) -> str | None:
        """Everything before the last '@' of the authority (None: no '@')."""
        if self.authority is None or "@" not in self.authority:
            return None
        return self.authority.rpartition("@")[0]

    @property
    def hosts(self) -> str:
        return (self.authority or "").rpartition("@")[2]

    @property
    def username(self) -> str | None:
        return unquote(self.userinfo.partition(":")[0]) if self.userinfo is not None else None

    @property
    def password(self) -> str | None:
        user, sep, password = (self.userinfo or "").partition(":")
        return unquote(password) if sep else None


def split_url(url: str) -> UrlParts:
    """`url` cut at its delimiters as RFC 3986 cuts them (the authority ends at the
    first '/', '?' or '#'). Never raises: what a part may hold is its reader's rule."""
    scheme = _SCHEME.match(url)
    rest = url[scheme.end():] if scheme else url
    rest, hash_sign, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    authority = None
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
    return UrlParts(scheme[1].lower() if scheme else "", authority, rest, query, fragment if hash_sign else None)


def is_redis(url) -> bool:
    return isinstance(url, str) and split_url(url).scheme in SCHEMES


def parse(url: str) -> RedisTarget:
    """The target of a Redis URL, or ValueError with one line saying what is expected."""
    if not isinstance(url, str) or not url.isprintable():
        raise ValueError("a Redis URL without control characters or line breaks")
    parts = split_url(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"a Redis URL with scheme {', '.join(SCHEMES)}")
    _no_stray_delimiters(parts)
    query = parse_qs(parts.query, keep_blank_values=True)
    durability = _durability(query)
    if parts.scheme in SINGLE_SCHEMES:
        return _single(parts, query, durability)
    kind = "sentinel" if parts.scheme in SENTINEL_SCHEMES else "cluster"
    allowed = (_SENTINEL_OPTIONS if kind == "sentinel" else _CLUSTER_OPTIONS) + _DURABILITY
    allowed += _TLS_OPTIONS if parts.scheme.startswith("rediss") else ()
    _only(parts.scheme, query, allowed)
    if "," in (parts.userinfo or ""):
        raise ValueError(f"a {parts.scheme}:// URL whose user name and password have any ',' written as %2C "
                         "(a ',' separates the hosts)")
    username, password = parts.username or None, parts.password
    nodes = _hosts(parts.scheme, parts.hosts)
    common = dict(nodes=nodes, username=username, password=password, client_name=_last(query, "client_name"),
                  tls=_tls(parts.scheme, query), **durability)
    path = [p for p in parts.path.split("/") if p]
    if kind == "cluster":
        if path:
            raise ValueError(f"a {parts.scheme}:// URL with no path (a Cluster has one database and no "
                             f"master name), e.g. {parts.scheme}://10.0.0.1:7000,10.0.0.2:7000")
        return RedisTarget("cluster", url, **common)
    if not path or len(path) > 2 or (len(path) == 2 and not _digits(path[1])):
        raise ValueError(f"a {parts.scheme}:// URL naming the master after the sentinels, e.g. "
                         f"{parts.scheme}://10.0.0.1:26379,10.0.0.2:26379/mymaster/0")
    auth = {k: v for k, v in (("password", _last(query, "sentinel_password")),
                              ("username", _last(query, "sentinel_username"))) if v is not None}
    return RedisTarget("sentinel", url, master=unquote(path[0]), db=int(path[1]) if len(path) == 2 else 0,
                       sentinel_auth=auth, **common)


def _no_stray_delimiters(parts: UrlParts) -> None:
    """A '/', '?', '#' or '@' inside a password ends the user-info early unless
    percent-encoded; say so rather than report the rest as a bad host or port.
    (A socket's path may hold an '@'.)"""
    in_path = "@" in parts.path and parts.scheme != "unix"
    if parts.fragment is not None or in_path or "@" in (parts.userinfo or ""):
        raise ValueError(f"a {parts.scheme}:// URL without '#' and with at most one '@' (in a user name or "
                         "password, write '/', '?', '#', '@' as %2F, %3F, %23, %40)")


def _single(parts, query, durability) -> RedisTarget:
    allowed = _SINGLE_OPTIONS + _DURABILITY + (_TLS_OPTIONS if parts.scheme == "rediss" else ())
    _only(parts.scheme, query, allowed)
    if "," in parts.hosts:
        raise ValueError(f"a {parts.scheme}:// URL with one host (for several: redis+sentinel:// or "
                         "redis+cluster://)")
    if parts.scheme == "unix":
        if parts.authority is None or parts.hosts or not parts.path:
            raise ValueError("a unix:// URL with the socket's path, e.g. unix:///run/redis/redis.sock?db=0")
    else:
        _single_host(parts.scheme, parts.hosts)
        path = parts.path.strip("/")
        if path and not _digits(path):
            raise ValueError(f"a {parts.scheme}:// URL whose path is a database number, "
                             f"e.g. {parts.scheme}://host:6379/0")
    db = _last(query, "db") or ""
    if db and not _digits(db):
        raise ValueError("a Redis URL whose db option is a database number")
    return RedisTarget("single", _for_redis_py(parts), **durability)


def _single_host(scheme: str, hosts: str) -> None:
    if hosts.count(":") > 1 and not hosts.startswith("["):
        raise ValueError(f"a {scheme}:// URL with an IPv6 host in brackets, e.g. {scheme}://[::1]:6379/0")
    host, port = _host_and_port(hosts)
    if port is not None and port_number(port) is None:
        raise ValueError(f"a {scheme}:// URL with a valid port")
    if not host:
        raise ValueError(f"a {scheme}:// URL with a host, e.g. {scheme}://127.0.0.1:6379/0")


def _for_redis_py(parts: UrlParts) -> str:
    """The URL redis-py parses (with urllib.parse): without our own options, which it
    would refuse, and with the user-info percent-encoded, so that no character of a
    password (a '[', say) meets its bracket checks. By hand, not urlunsplit: that
    would turn unix:///path into unix:/path."""
    auth = ""
    if parts.userinfo:
        user, sep, password = parts.userinfo.partition(":")
        auth = quote(unquote(user), safe="") + (":" + quote(unquote(password), safe="") if sep else "") + "@"
    kept = "&".join(p for p in parts.query.split("&")
                    if p and unquote_plus(p.split("=", 1)[0]) not in _DURABILITY)
    return f"{parts.scheme}://{auth}{parts.hosts}{parts.path}" + (f"?{kept}" if kept else "")


def _durability(query) -> dict:
    replicas, timeout = _last(query, "wait_replicas"), _last(query, "wait_timeout")
    out = {}
    if replicas is not None:
        if not _digits(replicas) or int(replicas) > MAX_WAIT_REPLICAS:
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
    if not unknown:
        return
    # A '?' in a password starts the query early, its '@' and host inside: never echo that.
    if any("@" in k or "@" in v for k, values in query.items() for v in values) or \
            not all(_OPTION_NAME.fullmatch(k) for k in unknown):
        raise ValueError(f"a {scheme}:// URL whose query options are among {', '.join(allowed)} "
                         "(in a user name or password, write '?' as %3F)")
    raise ValueError(f"a {scheme}:// URL whose query options are among {', '.join(allowed)} "
                     f"(not {', '.join(unknown)})")


def _last(query, key):
    values = query.get(key)
    return values[-1] if values else None


def _hosts(scheme: str, hostlist: str) -> tuple:
    example = "10.0.0.1:26379,10.0.0.2:26379" if "sentinel" in scheme else "10.0.0.1:7000,10.0.0.2:7000"
    nodes = []
    for item in hostlist.split(","):
        host, port = _host_and_port(item.strip())
        number = port_number(port) if port is not None else None
        if not (host and number):
            raise ValueError(f"a {scheme}:// URL listing HOST:PORT of each seed node, e.g. {scheme}://{example}")
        nodes.append((host, number))
    return tuple(nodes)


def _host_and_port(item: str) -> tuple[str, str | None]:
    """HOST[:PORT] or [IPV6][:PORT] -> (host, port as written, None when absent);
    the host is "" when it is none (an empty one, an unclosed bracket, an IPv6
    address out of brackets, text around the brackets)."""
    if item.startswith("["):
        inside, closed, after = item[1:].partition("]")
        if not (closed and _is_ipv6(inside)) or (after and not after.startswith(":")):
            return "", None
        return inside, after[1:] if after else None
    host, colon, port = item.partition(":")
    return (host if _HOST_NAME.fullmatch(host) else ""), (port if colon else None)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _tls(scheme: str, query) -> dict | None:
    if not scheme.startswith("rediss"):
        return None
    options = {k: _last(query, k) for k in _TLS_OPTIONS if _last(query, k) is not None}
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = options["ssl_check_hostname"].lower() in ("1", "true", "yes")
    return options
