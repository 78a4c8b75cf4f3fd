"""HOST:PORT, the one rule for an address to listen on (metrics.listen, web.listen,
`mpqueue web --listen`) and for reading one back (binding it, `mpqctl metrics`):
a host, then ":" and a port from 1 to 65535 in ASCII digits, no white space; an
IPv6 host in brackets ([::1]:9808), whose brackets are dropped when it is split.
Also the host part of an HTTP Host header, and which hosts are loopback. One home,
so the config check, the CLI and the servers agree and say the same when they don't.
Broker URLs name their hosts by a rule of their own (redis_url.py: the port may be
left out) and share port_number() with this one."""
from __future__ import annotations

import ipaddress

HOST_PORT = "HOST:PORT such as 127.0.0.1:9808 (an IPv6 host in brackets: [::1]:9808)"


def split_host_port(text) -> tuple[str, int]:
    """'127.0.0.1:9808' -> ('127.0.0.1', 9808); '[::1]:9808' -> ('::1', 9808).
    ValueError, in the one wording, for anything else."""
    host, sep, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = port_number(port)
    if not (sep and host and number) or "[" in host or "]" in host or any(c.isspace() for c in text):
        raise ValueError(f"expected {HOST_PORT}, got {text!r}")
    return host, number


def join_host_port(host: str, port: int) -> str:
    """The inverse of split_host_port: an IPv6 host goes back in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def port_number(text: str) -> int | None:
    """A port as written (ASCII digits: str.isdigit() also takes '²', which int()
    refuses), 1 to 65535; None for anything else."""
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if 0 < int(text) < 65536 else None


def host_of(header: str) -> str:
    """The host of an HTTP Host header: '127.0.0.1:9809' -> '127.0.0.1',
    '[::1]:9809' -> '::1'; a bare IPv6 address (not valid in a header) stays whole."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def is_loopback(host: str) -> bool:
    """Only what surely stays on this host: 127.0.0.0/8, ::1 and the name localhost
    (any other name may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
