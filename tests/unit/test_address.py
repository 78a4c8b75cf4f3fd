"""HOST:PORT, the one rule (core/address.py) behind metrics.listen, web.listen,
`mpqueue web --listen`, binding the metrics endpoint and `mpqctl metrics`: every
place takes and refuses the same text, and refuses it in the same words."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mpqueue.core import address, checks
from mpqueue.core.address import HOST_PORT, host_of, join_host_port, port_number, split_host_port
from mpqueue.web.settings import SetupError, resolve

GOOD = [
    ("127.0.0.1:9808", ("127.0.0.1", 9808)),
    ("0.0.0.0:1", ("0.0.0.0", 1)),
    ("localhost:65535", ("localhost", 65535)),
    ("metrics.internal:9808", ("metrics.internal", 9808)),
    ("[::1]:9808", ("::1", 9808)),
    ("[::]:9809", ("::", 9809)),
]
BAD = ["", "9808", ":9808", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:98O8",
       "127.0.0.1:²", "127.0.0.1:+80", " 127.0.0.1:9808", "127.0.0.1: 9808", "local host:9808", "[::1:9808",
       "::1]:9808", "[]:9808", "[[::1]]:9808", None, 9808]


@pytest.mark.parametrize("text, split", GOOD)
def test_a_host_and_port_split_with_ipv6_brackets_dropped_and_join_back(text, split):
    assert split_host_port(text) == split
    assert join_host_port(*split) == text


@pytest.mark.parametrize("text", BAD)
def test_anything_else_is_refused_in_the_one_wording(text):
    with pytest.raises(ValueError) as refused:
        split_host_port(text)
    assert str(refused.value) == f"expected {HOST_PORT}, got {text!r}"


@pytest.mark.parametrize("text", [t for t in BAD if isinstance(t, str)])
def test_the_config_check_and_the_web_cli_refuse_what_the_rule_refuses(text):
    with pytest.raises(checks.Bad) as bad:
        checks.listen(allow_unix=False)(text)
    assert bad.value.expected == HOST_PORT
    if text:                     # "" on the command line means web.listen
        with pytest.raises(SetupError) as refused:
            resolve(SimpleNamespace(web=SimpleNamespace(listen="127.0.0.1:9809")), listen=text)
        assert str(refused.value) == f"--listen: expected {HOST_PORT}, got {text!r}"


@pytest.mark.parametrize("text, split", GOOD)
def test_the_config_check_takes_what_the_rule_takes(text, split):
    assert checks.listen(allow_unix=False)(text) == text
    assert checks.listen(allow_unix=True)("unix") == "unix"


@pytest.mark.parametrize("text, number", [("1", 1), ("65535", 65535), ("0", None), ("65536", None), ("²", None),
                                          ("", None), ("-1", None), ("1.0", None)])
def test_a_port_is_ascii_digits_from_1_to_65535(text, number):
    assert port_number(text) == number


@pytest.mark.parametrize("header, host", [("127.0.0.1:9809", "127.0.0.1"), ("[::1]:9809", "::1"), ("[::1]", "::1"),
                                          ("example.org", "example.org"), ("::1", "::1")])
def test_the_host_of_a_host_header(header, host):
    assert host_of(header) == host


def test_loopback_is_only_what_surely_stays_on_this_host():
    assert all(address.is_loopback(h) for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1"))
    assert not any(address.is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "localhost.example.org", ""))
