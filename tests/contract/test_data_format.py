"""The broker data format (mpqueue/brokers/data_format.py), on every broker: a
broker records the format it holds once, the first process to reach it records
it where nothing did (v0.1.0 wrote no record), and data of a newer format is
refused before anything is read or written. Checked once per process, never
per call."""
import sqlite3

import pytest

from mpqueue.brokers import DataFormatError, PushItem, open_broker
from mpqueue.brokers.data_format import CURRENT
from mpqueue.brokers.sqlite import SQLiteBroker
from mpqueue.core import envelope as jobmod

Q = "contract"
NEWER = f"broker data format {CURRENT + 1} is newer than this mpqueue understands ({CURRENT}): " \
        "upgrade mpqueue on this host"


def record(broker):
    """The format record as the broker stores it: None when there is none."""
    if isinstance(broker, SQLiteBroker):
        with sqlite3.connect(broker.path) as db:
            return db.execute("PRAGMA user_version").fetchone()[0] or None
    value = broker.client.get(broker.service.format)
    return None if value is None else int(value)


def plant(broker, value) -> None:
    """What another release (or v0.1.0, with None) left in the broker."""
    if isinstance(broker, SQLiteBroker):
        db = sqlite3.connect(broker.path, isolation_level=None)
        db.execute(f"PRAGMA user_version = {int(value or 0)}")
        db.close()
    elif value is None:
        broker.client.delete(broker.service.format)
    else:
        broker.client.set(broker.service.format, value)


def push(broker, tag):
    job_id, env = jobmod.encode("t:f", [tag])
    broker.push(Q, [PushItem(env, 0, 0.0)])
    return job_id


def test_a_new_broker_records_the_current_format_on_first_contact(broker):
    # Given an empty broker, when a process first reaches it
    assert broker.check_format() == CURRENT
    # then the broker says which format it holds, for every process after it
    assert record(broker) == CURRENT
    again = open_broker(broker.url)
    try:
        assert again.check_format() == CURRENT
    finally:
        again.close()


def test_any_first_call_checks_the_format_not_only_check_format(broker):
    # Given a broker whose record is gone (as v0.1.0 left it)
    broker.check_format()
    plant(broker, None)
    # when a new process makes any call at all
    other = open_broker(broker.url)
    try:
        other.queues()
        # then it recorded the format before that call ran
        assert record(broker) == CURRENT
    finally:
        other.close()


def test_data_written_without_a_record_is_format_1_and_stays_readable(broker):
    # Given jobs written by a release that kept no record (v0.1.0)
    job_id = push(broker, "old")
    plant(broker, None)
    # when a process of this release opens the broker
    other = open_broker(broker.url)
    try:
        # then it accepts the data, records format 1, and reads the jobs
        assert other.check_format() == 1
        reserved, _ = other.reserve(Q, "c1", 1, 30)
        assert [jobmod.decode(r.envelope, Q, r.token).id for r in reserved] == [job_id]
        assert record(broker) == 1
    finally:
        other.close()


def test_a_newer_format_is_refused_in_one_line_and_nothing_is_read_or_written(broker):
    # Given a broker a newer release wrote
    broker.check_format()
    push(broker, "new")
    plant(broker, CURRENT + 1)
    # when a process of this release opens it and pushes
    with pytest.raises(DataFormatError) as refused:
        other = open_broker(broker.url)          # SQLite checks on opening, Redis on the first call
        try:
            push(other, "misread")
        finally:
            other.close()
    # then it is refused in one line naming both formats
    assert str(refused.value) == NEWER
    # and the newer data is untouched: its record, and no job added
    assert record(broker) == CURRENT + 1
    assert broker.counts(Q)["ready"] == 1


def test_a_record_no_release_wrote_is_refused(broker):
    broker.check_format()
    plant(broker, -1)
    with pytest.raises(DataFormatError, match="broker data format -1 is not one mpqueue ever wrote"):
        other = open_broker(broker.url)
        try:
            other.check_format()
        finally:
            other.close()


def test_the_format_is_checked_once_per_process_not_per_call(broker):
    # Given a process that checked the format on its first call
    push(broker, "first")
    # when the record disappears behind its back
    plant(broker, None)
    # then its later calls neither read nor write it again: pushes cost what they did
    for n in range(20):
        push(broker, n)
    reserved, _ = broker.reserve(Q, "c1", 21, 30)
    assert len(reserved) == 21
    assert record(broker) is None


def test_a_replica_accepts_data_without_a_record_and_leaves_recording_to_its_master(sentinel_group, sentinel_url):
    # Given a replica of a master that has no record yet (a plain URL: mpqctl pointed at it, say)
    replica_port = next(p for p in sentinel_group.data_ports if p != sentinel_group.master_port())
    replica = open_broker(f"redis://127.0.0.1:{replica_port}/0")
    try:
        # Then its reads go on (no record: format 1), without the write a replica refuses
        assert replica.check_format() == 1
        assert replica.client.get(replica.service.format) is None
    finally:
        replica.close()
