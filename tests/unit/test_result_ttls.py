"""How long a cancel's record lasts is the queue's result_ttl: a Client made for a
service (Client.from_config, mpqctl, the dashboard) knows it from the config, through
one rule (producer/client.py: result_ttls); a queue the client has no setting for, or
a client with no config, has the schema's default."""
from __future__ import annotations

from types import SimpleNamespace

from mpqueue.core.schema import QUEUE_KEYS
from mpqueue.ops import ctl
from mpqueue.ops.ctl_target import Target
from mpqueue.producer.client import Client
from mpqueue.web.actions import Actions


def write_config(tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(f"broker: sqlite://{tmp_path}/broker.db\nimports: [json]\n"
                    "queues: {short: {result_ttl: 5}, none: {result_ttl: 0}, plain: {}}\n")
    return path


def test_a_client_made_from_a_config_keeps_each_queues_result_ttl(tmp_path):
    client = Client.from_config(write_config(tmp_path))
    try:
        assert [client.result_ttl(q) for q in ("short", "none", "plain")] == [5, 0, 300]
        assert client.result_ttl("undeclared") == client.result_ttl(None) == QUEUE_KEYS["result_ttl"].default
    finally:
        client.close()


def test_mpqctl_and_the_dashboard_make_their_client_with_the_same_result_ttls(tmp_path, monkeypatch):
    # Given one service config, seen by mpqctl (--config) and by the dashboard
    path = write_config(tmp_path)
    target = Target(str(path), None, None)
    made = []
    monkeypatch.setattr(ctl, "Client", lambda *a, **kw: made.append(kw["result_ttls"]))
    ctl._client(target)
    # Then both clients are told what Client.from_config knows
    from mpqueue.web import actions
    monkeypatch.setattr(actions, "Client", lambda *a, **kw: made.append(kw["result_ttls"]) or SimpleNamespace())
    monkeypatch.setattr(actions.handles, "cancel", lambda client, job_id, kill, queue: (None, "cancelled"))
    monkeypatch.setattr(Actions, "_action", lambda self: (None, "short", {"ids": ["j1"]}))
    monkeypatch.setattr(actions, "jsonify", lambda **kw: kw)
    monkeypatch.setattr(actions.security, "who", lambda: "test")
    Actions(target.config, SimpleNamespace(read_only=False), None).api_cancel()
    assert made == [{"short": 5, "none": 0, "plain": 300}] * 2


def test_a_client_with_no_config_has_the_default_everywhere(tmp_path):
    client = Client(f"sqlite://{tmp_path}/broker.db")
    try:
        assert client.result_ttl("any") == QUEUE_KEYS["result_ttl"].default == 300
    finally:
        client.close()
