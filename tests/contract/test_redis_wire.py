"""The Redis broker's own wire path (brokers/resp.py): script calls packed by
hand must behave like redis-py's own, on a real redis-server."""
import json

import pytest

from mpqueue.core import envelope as jobmod
from mpqueue.brokers import BrokerError, PushItem, open_broker

Q = "wire"


@pytest.fixture
def broker(redis_url):
    b = open_broker(redis_url)
    yield b
    b.close()


def test_scripts_are_loaded_again_after_redis_forgot_them(broker, rdb):
    # Given a broker that has called its scripts, and a Redis that then lost them (restart, SCRIPT FLUSH)
    _, env = jobmod.encode("t:f", ["a"])
    broker.push(Q, [PushItem(env, 0, 0.0)])
    rdb.script_flush()
    # When it calls them again, it loads them and the call goes through
    _, env = jobmod.encode("t:f", ["b"])
    broker.push(Q, [PushItem(env, 0, 0.0)])
    reserved, _ = broker.reserve(Q, "c1", 5, 30)
    assert [jobmod.decode(r.envelope).args for r in reserved] == [["a"], ["b"]]


def test_an_error_reply_is_a_broker_error_changes_nothing_and_the_connection_stays_usable(broker):
    # Given a call the script rejects (an unknown cancel mode on a held job)
    with pytest.raises(BrokerError, match="unknown mode"):
        _bogus_settle(broker)
    # Then the job is still held (a script's writes before an error would stay),
    # and the next call on the same pool gets its own reply, not a stale one
    assert broker.counts(Q)["running"] == 1
    _, env = jobmod.encode("t:f", [1])
    broker.push(Q, [PushItem(env, 0, 0.0)])
    assert broker.ready_count(Q) == 1


def _bogus_settle(broker):
    # settle.lua, which took an action, became one script per action: cancel.lua takes a mode
    _, env = jobmod.encode("t:f", [0])
    broker.push(Q, [PushItem(env, 0, 0.0)])
    [r], _ = broker.reserve(Q, "c1", 1, 30)
    job_id = r.envelope.split()[0]
    return broker._call("cancel", Q, [job_id, "", "bogus", 60], [broker.keys(Q).done(job_id)])


def test_arguments_of_every_kind_arrive_intact(broker):
    # Text beyond ASCII, an empty string and large numbers pass through as sent
    _, env = jobmod.encode("t:f", ["żółć ✓", "", 2 ** 40])
    broker.push(Q, [PushItem(env, 9, 0.0)])
    [r], _ = broker.reserve(Q, "c1", 1, 2 ** 31 - 1)
    assert jobmod.decode(r.envelope).args == ["żółć ✓", "", 2 ** 40]


def ghost(rdb, redis_server, name, lease_ms):
    """An idle consumer whose host is gone but whose subscription Redis still counts."""
    import redis
    sub = redis.Redis(host="127.0.0.1", port=redis_server.port).pubsub()
    sub.subscribe(f"mpq:{{{Q}}}:wake:{name}")       # never read again
    rdb.rpush(f"mpq:{{{Q}}}:idle", f"{name} {lease_ms}")
    return sub


def test_a_job_handed_to_a_consumer_that_never_took_it_comes_back_unspent(broker, rdb, redis_server):
    # Given a push that hands its job to an idle consumer whose host is gone
    from mpqueue.core.config import QueueConfig
    from mpqueue.supervisor.recovery import Recovery
    from tests.support import wait_for
    sub = ghost(rdb, redis_server, "deadnode/1", 50)
    try:
        job_id, env = jobmod.encode("t:f", ["x"])
        broker.push(Q, [PushItem(env, 0, 0.0)])
        assert broker.find(Q, job_id)["consumer"] == "deadnode/1" and broker.held(Q)[0].unconfirmed
        # When its lease ends unconfirmed and the reaper runs (no retries left)
        wait_for(lambda: broker.expired(Q, 10), 5, what="the hand-off's lease to end")
        Recovery(broker, {Q: QueueConfig(name=Q, retries=0)}).reap_expired(Q)
        # Then it is ready again with its attempt refunded, not failed as lost
        reserved, _ = broker.reserve(Q, "c1", 1, 30)
        assert [jobmod.decode(r.envelope).attempts for r in reserved] == [1]
        assert broker.counts(Q)["failed"] == 0
    finally:
        sub.close()


def test_a_confirmed_hand_off_whose_node_dies_spends_its_attempt(broker, rdb, redis_server):
    from mpqueue.core.config import QueueConfig
    from mpqueue.supervisor.recovery import Recovery
    from tests.support import wait_for
    sub = ghost(rdb, redis_server, "node/2", 50)
    try:
        job_id, env = jobmod.encode("t:f", ["y"])
        broker.push(Q, [PushItem(env, 0, 0.0)])
        # Given the consumer took it (it confirms before running it), then its node died
        broker.confirm(Q, job_id, broker.held(Q)[0].token, 0.05)
        wait_for(lambda: not broker.held(Q)[0].unconfirmed, 5, what="the receipt to arrive")
        wait_for(lambda: broker.expired(Q, 10), 5, what="the lease to end")
        Recovery(broker, {Q: QueueConfig(name=Q, retries=0)}).reap_expired(Q)
        # Then it counts as a loss: with no retries left it is failed as lost (a job that
        # kills its node can't loop)
        assert broker.find(Q, job_id)["error"]["type"] == "lost"
    finally:
        sub.close()


def test_an_unconfirmed_hand_off_has_a_short_lease_and_its_receipt_gives_it_the_consumers_own(broker, rdb,
                                                                                             redis_server):
    sub = ghost(rdb, redis_server, "node/3", 600000)      # the consumer's lease: 10 minutes
    try:
        job_id, env = jobmod.encode("t:f", ["z"])
        broker.push(Q, [PushItem(env, 0, 0.0)])
        now_ms = rdb.time()[0] * 1000
        handed = rdb.zscore(f"mpq:{{{Q}}}:leases", job_id)
        assert now_ms + 10_000 < handed <= now_ms + 16_000      # 15 s until confirmed
        broker.confirm(Q, job_id, broker.held(Q)[0].token, 600)
        from tests.support import wait_for
        wait_for(lambda: rdb.zscore(f"mpq:{{{Q}}}:leases", job_id) > now_ms + 500_000, 5, what="the full lease")
    finally:
        sub.close()


def test_failures_stored_before_the_order_index_existed_are_listed_oldest_first(broker, rdb):
    # Given a failed store written by a version without the failed_at index (records
    # only), two of them old, and one failure recorded by today's code
    keys = broker.keys(Q)
    for tag, at in (("new", 3000.0), ("oldest", 1000.0), ("old", 2000.0)):
        job_id, env = jobmod.encode("t:f", [tag])
        rdb.hset(keys.failed, job_id, f"{env}\n" + json.dumps({"type": "error", "at": at}))
    _, env = jobmod.encode("t:f", ["today"])
    broker.push(Q, [PushItem(env, 0, 0.0)])
    (held,), _ = broker.reserve(Q, "c1", 1, 30)
    broker.fail(Q, jobmod.job_id(held.envelope), held.token, json.dumps({"type": "error", "at": 4000.0}))
    rdb.zadd(keys.failed_at, {"gone-long-ago": 1})       # an entry whose record an old node dropped
    # When the store is listed
    rows = broker.failed(Q, 10)
    # Then every record is there, oldest first, and the index now matches the records
    assert [jobmod.decode(env).args[0] for _, env, _ in rows] == ["oldest", "old", "new", "today"]
    assert rdb.zcard(keys.failed_at) == rdb.hlen(keys.failed) == 4
