"""Every Lua script builds (redis_scripts.py): its KEYS header names exactly the keys
it and the _keys.lua helpers it calls use, and it gets only those helpers."""
from __future__ import annotations

import re
from importlib import resources

import pytest

from mpqueue.brokers import redis_scripts

SCRIPTS = sorted(p.name[:-4] for p in resources.files("mpqueue.brokers").joinpath("lua").iterdir()
                 if p.name.endswith(".lua") and not p.name.startswith("_"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_declares_exactly_the_keys_it_uses(name):
    source = redis_scripts.script_source(name)      # builds: its header matches its code
    # Every key is written as its position, within the keys the script is given
    # (KEYS[NKEYS + i], the extra ones, as "<count> + i"); no name is left to resolve.
    count = redis_scripts.key_count(name)
    assert not re.search(r"\b(?:NKEYS|HELD|LEASES|READY|STATS|WHERE|IDLE|WATCH|CANCELS)\b", source)
    literal = [int(n) for n in re.findall(r"KEYS\[(\d+)\]", source)]
    assert all(1 <= n <= count for n in literal)
    assert all(int(n) == count for n in re.findall(r"KEYS\[(\d+) \+ i\]", source))


def test_a_script_gets_only_the_helpers_it_calls():
    # Given extend.lua, which calls now_ms() and nothing else of _keys.lua
    source = redis_scripts.script_source("extend")
    # Then the rest of the helpers are not sent
    assert "local function now_ms" in source and "local function hand_off" not in source
    assert redis_scripts.script_keys("extend") == ("held", "leases")


def test_on_a_cluster_every_publish_is_sharded():
    assert "local PUBLISH = 'SPUBLISH'" in redis_scripts.script_source("push", sharded=True)
    assert "'PUBLISH'" not in redis_scripts.script_source("push", sharded=True)


def test_a_header_that_does_not_match_the_code_is_refused(monkeypatch):
    real = redis_scripts._lua
    monkeypatch.setattr(redis_scripts, "_lua", lambda n: real(n).replace("-- KEYS: held leases", "-- KEYS: held", 1))
    redis_scripts.script_keys.cache_clear()
    try:
        with pytest.raises(ValueError, match="KEYS header"):
            redis_scripts.script_source.__wrapped__("extend")
    finally:
        redis_scripts.script_keys.cache_clear()
