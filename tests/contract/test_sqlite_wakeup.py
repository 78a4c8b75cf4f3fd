"""The SQLite broker's wake-up channel: a FIFO per waiting consumer beside the database."""
import os
import select
import stat

from mpqueue.core import envelope as jobmod
from mpqueue.brokers import PushItem, open_broker


def push(broker, queue):
    broker.push(queue, [PushItem(jobmod.encode("t:f")[1], 0, 0.0)])


def fifos(broker, queue):
    d = broker._wake_dir(queue)
    return sorted(n for n in os.listdir(d) if not n.startswith(".")) if os.path.isdir(d) else []


def test_a_push_wakes_every_waiter_of_its_queue_and_no_other(tmp_path):
    broker = open_broker(f"sqlite://{tmp_path}/q.db")
    a, b, other = broker.waiter("q"), broker.waiter("q"), broker.waiter("q2")
    try:
        push(broker, "q")
        readable, _, _ = select.select([a, b, other], [], [], 5)
        assert a in readable and b in readable
        # (the other queue's waiter has had its chance: the hints were written before push returned)
        assert select.select([other], [], [], 0)[0] == []
        a.drain()
        assert select.select([a], [], [], 0)[0] == []
    finally:
        for w in (a, b, other):
            w.close()


def test_the_fifo_of_a_consumer_that_died_is_removed_by_the_next_wake(tmp_path):
    url = f"sqlite://{tmp_path}/q.db"
    broker = open_broker(url)
    pid = os.fork()
    if pid == 0:
        open_broker(url).waiter("q")      # and die without closing it
        os._exit(0)
    os.waitpid(pid, 0)
    assert len(fifos(broker, "q")) == 1
    push(broker, "q")
    assert fifos(broker, "q") == []


def test_wake_files_are_as_writable_as_the_database(tmp_path):
    broker = open_broker(f"sqlite://{tmp_path}/q.db")
    os.chmod(tmp_path / "q.db", 0o660)
    waiter = broker.waiter("q")
    try:
        assert stat.S_IMODE(os.stat(waiter.path).st_mode) == 0o660
        assert stat.S_IMODE(os.stat(os.path.dirname(waiter.path)).st_mode) == 0o750
    finally:
        waiter.close()
    assert fifos(broker, "q") == []
