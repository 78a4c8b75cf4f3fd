"""How Client hands pushes to its broker (producer/client.py _deliver): one broker
call for a push, chunks for a large push_many, duplicates reported at their
position in the caller's list, and no call at all for nothing."""
from mpqueue.producer.client import Client


class RecordingBroker:
    """Records each push call; the items whose caller id is in `live` are reported
    as duplicates, by their position in the call (as brokers do)."""

    def __init__(self, live=()):
        self.calls, self.live = [], set(live)

    def add_queues(self, names):
        pass

    def push(self, queue, items):
        self.calls.append(len(items))
        return [n for n, item in enumerate(items) if item.caller_id in self.live]

    def close(self):
        pass


def test_a_push_is_one_broker_call_and_its_handle_says_whether_it_was_a_duplicate():
    broker = RecordingBroker(live={"taken"})
    client = Client("redis://unused", broker=broker)
    fresh = client.push("q", "m:f", args=[1])
    dup = client.push("q", "m:f", job_id="taken")
    assert broker.calls == [1, 1]
    assert (fresh.duplicate, dup.duplicate) == (False, True)


def test_push_many_goes_in_chunks_and_reports_each_duplicate_at_its_place_in_the_whole_list():
    # Given five jobs, the second and the fifth with ids already live
    broker = RecordingBroker(live={"b", "e"})
    client = Client("redis://unused", broker=broker)
    jobs = [{"task": "m:f", "job_id": i} for i in "abcde"]
    # When they go two to a call
    handles = client.push_many("q", jobs, chunk=2)
    # Then three calls were made, and the duplicates are the ones at positions 1 and 4
    assert broker.calls == [2, 2, 1]
    assert [h.duplicate for h in handles] == [False, True, False, False, True]


def test_push_many_of_nothing_calls_no_broker():
    broker = RecordingBroker()
    assert Client("redis://unused", broker=broker).push_many("q", []) == []
    assert broker.calls == []
