"""The node records every broker keeps for `mpqctl status`, `mpqctl ping` and the
dashboard: a heartbeat makes a node live, and a node that stops cleanly removes
its own record at once instead of showing as live until the record expires."""
import time


def beat(broker, node_id, service="svc", ttl=90):
    broker.heartbeat(node_id, {"node": node_id, "service": service, "heartbeat_at": time.time()}, ttl=ttl)


def test_forget_node_removes_that_node_at_once_and_no_other(broker):
    # Given two live nodes with records far from expiring
    beat(broker, "host-a:1:aa")
    beat(broker, "host-b:2:bb")
    assert sorted(n["node"] for n in broker.nodes()) == ["host-a:1:aa", "host-b:2:bb"]
    # When one of them forgets itself
    broker.forget_node("host-a:1:aa")
    # Then only the other is listed
    assert [n["node"] for n in broker.nodes()] == ["host-b:2:bb"]


def test_forgetting_an_unknown_node_changes_nothing(broker):
    # Given a live node
    beat(broker, "host-b:2:bb")
    # When an id that never beat (or was forgotten already) is forgotten
    broker.forget_node("host-z:9:zz")
    broker.forget_node("host-z:9:zz")
    # Then the live node is still listed
    assert [n["node"] for n in broker.nodes()] == ["host-b:2:bb"]


def test_a_forgotten_node_is_listed_again_after_its_next_heartbeat(broker):
    # Given a node that was forgotten
    beat(broker, "host-a:1:aa")
    broker.forget_node("host-a:1:aa")
    assert broker.nodes() == []
    # When it beats again (a restarted supervisor reusing nothing but the broker)
    beat(broker, "host-a:1:aa")
    # Then it is live again
    assert [n["node"] for n in broker.nodes()] == ["host-a:1:aa"]
