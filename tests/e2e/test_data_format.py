"""Broker data of a newer format than this release understands (data_format.py)
is refused by every entry point, in one line naming both formats, before it
reads or writes anything: the service exits 78 (systemd does not restart it),
mpqctl and `mpqueue web` exit 78, the Python API raises DataFormatError. An
empty broker is accepted and gets the current format. On Redis and SQLite."""
from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

import pytest
import redis
import yaml

import mpqueue
from mpqueue.brokers import DataFormatError, open_broker
from mpqueue.brokers.data_format import CURRENT
from mpqueue.producer.default import set_default_client
from tests.support import free_port, wait_for

NEWER = CURRENT + 1
REFUSAL = (f"broker data format {NEWER} is newer than this mpqueue understands ({CURRENT}): "
           "upgrade mpqueue on this host")


pytestmark = pytest.mark.each_broker


def plant_newer_format(url: str) -> None:
    """What a newer release leaves in the broker: its format record."""
    if url.startswith("redis"):
        redis.Redis.from_url(url).set("mpq:format", NEWER)
        return
    open_broker(url).close()                     # a database as this release makes it...
    db = sqlite3.connect(url[len("sqlite://"):], isolation_level=None)
    db.execute(f"PRAGMA user_version = {NEWER}")  # ...that a newer release took over
    db.close()


def recorded_format(url: str) -> int | None:
    if url.startswith("redis"):
        value = redis.Redis.from_url(url).get("mpq:format")
        return None if value is None else int(value)
    db = sqlite3.connect(url[len("sqlite://"):])
    try:
        return db.execute("PRAGMA user_version").fetchone()[0] or None
    finally:
        db.close()


def nothing_written(url: str) -> bool:
    """Only the planted record is there: no queue registered, no job pushed."""
    if url.startswith("redis"):
        return redis.Redis.from_url(url, decode_responses=True).keys("mpq:*") == ["mpq:format"]
    db = sqlite3.connect(url[len("sqlite://"):])
    try:
        return db.execute("SELECT (SELECT count(*) FROM job) + (SELECT count(*) FROM queue)").fetchone()[0] == 0
    finally:
        db.close()


def one_line(text: str, prog: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), text
    return lines[0]


def test_an_empty_broker_is_accepted_and_gets_the_current_format(service, broker_url):
    # Given an empty broker, When a service starts on it
    svc = service().start()
    # Then it runs, and the broker now says which format it holds
    assert recorded_format(broker_url) == CURRENT
    assert svc.stop() == 0


def test_the_service_refuses_a_newer_format_with_exit_78_and_says_why(service, broker_url):
    # Given a broker a newer release wrote
    plant_newer_format(broker_url)
    # When the service starts
    svc = service()
    svc.start(wait_ready=False)
    # Then it exits 78 (the unit does not restart), saying so in one line, to stderr and to systemd
    assert svc.proc.wait(30) == 78
    log = svc.log()
    assert "Traceback" not in log and [line for line in log.splitlines() if "data format" in line] == \
        [f"mpqueue: {REFUSAL}"], log
    assert any(f"STATUS=failed: {REFUSAL}" in m and "ERRNO=93" in m for m in svc.read_messages()), \
        svc.read_messages()
    assert not any("READY=1" in m for m in svc.read_messages())
    assert nothing_written(broker_url)


def test_mpqctl_refuses_a_newer_format_in_one_line(broker_url):
    plant_newer_format(broker_url)
    for command in (["status"], ["push", "--new-queue", "default", "m:f"]):
        result = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--broker", broker_url, *command],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        assert one_line(result.stderr, "mpqctl").endswith(f": {REFUSAL}")
    assert nothing_written(broker_url)


def test_the_dashboard_refuses_a_newer_format_in_one_line(tmp_path, broker_url):
    pytest.importorskip("flask")
    plant_newer_format(broker_url)
    config = tmp_path / "dash.yaml"
    config.write_text(yaml.safe_dump({"name": "dash", "broker": broker_url, "imports": ["mpqueue.examples.tasks"],
                                      "queues": {"default": {}}, "log": {"format": "text"}}))
    result = subprocess.run([sys.executable, "-m", "mpqueue.ops.cli", "web", "--config", str(config),
                             "--listen", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 78, (result.stdout, result.stderr)
    assert one_line(result.stderr, "mpqueue") == f"mpqueue: {REFUSAL}"


def test_the_python_api_raises_data_format_error(broker_url):
    plant_newer_format(broker_url)
    # Client.push (SQLite refuses when the Client opens it, Redis on the first push)
    with pytest.raises(DataFormatError, match=f"^{REFUSAL}$".replace("(", r"\(").replace(")", r"\)")):
        mpqueue.Client(broker_url).push("default", "m:f")
    # mpqueue.connect() and a task's push()
    with pytest.raises(DataFormatError):
        mpqueue.connect(broker_url)
        mpqueue.task(queue="default")(lambda: None).push()
    set_default_client(None)
    # and the async producer, on its own connection
    with pytest.raises(DataFormatError):
        asyncio.run(mpqueue.Client(broker_url).apush("default", "m:f"))
    assert nothing_written(broker_url)


def test_a_worker_started_after_a_newer_release_took_the_broker_fails_to_boot_saying_why(service, broker_url, rdb):
    # Given a running service whose worker is replaced after every job
    svc = service({"queues": {"default": {"workers": 1, "max_jobs": 1}}}).start()
    client = mpqueue.Client(broker_url)
    client.push("default", "testtasks:hold", ["before"])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="the first job")
    # When a newer release takes the broker over while that job runs, and the worker is then replaced
    # (planting while the job holds its worker: planted after the job, the replacement could boot first)
    plant_newer_format(broker_url)
    rdb.rpush("test:release:before", 1)
    # Then the new worker refuses to boot on it (the supervisor retries with back-off, STATUS says why)
    problem = f"DataFormatError: {REFUSAL}"
    wait_for(lambda: problem in svc.log(), 20, what="the boot failure")
    svc.wait_message(f"STATUS=queue default: mpqueue.brokers.data_format.{problem}", 10)
    assert svc.stop() == 0
