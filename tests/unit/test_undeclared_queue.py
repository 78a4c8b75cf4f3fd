"""A push to a queue the client's config does not declare is said once per
process (issue #28, item 4: such a job waits forever, silently)."""
import logging

import yaml

from mpqueue.producer import client as clientmod
from mpqueue.producer.client import Client


class FakeBroker:
    def __init__(self):
        self.pushed = []

    def add_queues(self, names):
        pass

    def push(self, queue, items):
        self.pushed.append(queue)
        return ()


def config_client(tmp_path, monkeypatch, queues=("emails",)):
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump({"name": "svc", "broker": "redis://127.0.0.1:1/0", "imports": ["x"],
                                    "queues": {q: {"workers": 1} for q in queues}}))
    monkeypatch.setattr(clientmod, "open_broker", lambda url: FakeBroker())
    monkeypatch.setattr(clientmod, "_warned", set())
    return Client.from_config(path)


def test_a_push_to_an_undeclared_queue_warns_once_per_process(tmp_path, monkeypatch, caplog):
    # Given a client made from a config declaring only "emails"
    client = config_client(tmp_path, monkeypatch)
    # When it pushes twice to "default", and a second client from the same config once more
    with caplog.at_level(logging.WARNING, logger="mpqueue.producer"):
        client.push("default", "m:f")
        client.push("default", "m:f")
        Client.from_config(tmp_path / "svc.yaml").push("default", "m:f")
    # Then one warning names the queue, the config and what it declares
    warnings = [r.getMessage() for r in caplog.records if r.name == "mpqueue.producer"]
    assert len(warnings) == 1, warnings
    assert "'default'" in warnings[0] and "svc.yaml" in warnings[0] and "emails" in warnings[0]


def test_a_declared_queue_or_a_client_without_config_says_nothing(tmp_path, monkeypatch, caplog):
    client = config_client(tmp_path, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="mpqueue.producer"):
        client.push("emails", "m:f")
        Client("redis://127.0.0.1:1/0", broker=FakeBroker()).push("anything", "m:f")
    assert not [r for r in caplog.records if r.name == "mpqueue.producer"]
