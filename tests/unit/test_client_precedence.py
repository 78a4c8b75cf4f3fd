"""Where task.push() goes, one rule (producer/default.py): an explicit client
(connect(), a worker's) > the environment (MPQUEUE_BROKER over MPQUEUE_CONFIG)
> a framework's setting > an error saying what to set."""
import pytest

import mpqueue
from mpqueue import Client
from mpqueue.producer import default


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.delenv("MPQUEUE_BROKER", raising=False)
    monkeypatch.delenv("MPQUEUE_CONFIG", raising=False)
    saved, sources = default._default, list(default._sources)
    default.set_default_client(None)
    yield
    default.set_default_client(saved)
    default._sources[:] = sources


def a_framework(url, config=None):
    """A source as contrib/ registers one: the environment first, then its setting."""
    made = {}

    def source():
        target, _ = default.target(url, config)
        return made.setdefault(target, default.make_client(target)) if target else None
    default.add_source(source)
    return made


def test_the_environment_wins_over_a_frameworks_setting(monkeypatch, tmp_path):
    a_framework("redis://127.0.0.1:1/0")
    monkeypatch.setenv("MPQUEUE_BROKER", "sync://")
    assert default.default_client().url == "sync://"


def test_the_environments_url_wins_over_its_config_and_over_the_settings(monkeypatch):
    assert default.target("redis://h/0", "/x.yaml") == ("redis://h/0", "MPQUEUE_BROKER")
    assert default.target(None, "/x.yaml") == ("/x.yaml", "MPQUEUE_CONFIG")
    monkeypatch.setenv("MPQUEUE_CONFIG", "/env.yaml")
    assert default.target("redis://h/0", "/x.yaml") == ("/env.yaml", "$MPQUEUE_CONFIG")
    monkeypatch.setenv("MPQUEUE_BROKER", "sync://")
    assert default.target("redis://h/0", "/x.yaml") == ("sync://", "$MPQUEUE_BROKER")


def test_a_frameworks_setting_applies_when_the_environment_names_nothing():
    a_framework("sync://")
    assert default.default_client().url == "sync://"


def test_an_explicit_client_wins_over_everything(monkeypatch):
    a_framework("redis://127.0.0.1:1/0")
    monkeypatch.setenv("MPQUEUE_BROKER", "redis://127.0.0.1:2/0")
    client = default.connect("sync://")
    assert default.default_client() is client


def test_nothing_anywhere_says_what_to_set():
    with pytest.raises(RuntimeError, match=r"no broker configured .* set MPQUEUE_BROKER / MPQUEUE_CONFIG$"):
        default.default_client()


seen = []


@mpqueue.task(name="tests.unit.precedence:note")
def note():
    seen.append("job")


def test_a_sync_client_runs_its_jobs_inside_the_given_scope():
    from mpqueue.execution.runner import JobScope

    class Scope(JobScope):
        def enter(self):
            seen.append("enter")

        def exit(self, token):
            seen.append("exit")
    client = Client("sync://", scope=Scope())
    note.push(client=client)
    assert seen == ["enter", "job", "exit"]


def test_the_environments_client_is_not_taken_for_an_explicit_one(monkeypatch):
    # A push before any framework is set up must not pin the process to the environment's client.
    monkeypatch.setenv("MPQUEUE_BROKER", "sync://")
    assert default.default_client().url == "sync://" and default._default is None
    monkeypatch.delenv("MPQUEUE_BROKER")
    a_framework("sync://?second")
    assert default.default_client().url == "sync://?second"
