"""Reload decisions (pure): what can change in place, and which old workers may stop."""
from dataclasses import dataclass, replace

import pytest

from mpqueue.supervisor import reload
from mpqueue.core.config import QueueConfig, ServiceConfig


def svc(**kw):
    return ServiceConfig(name="orders", broker="redis://a/0", imports=("x",),
                         queues=kw.pop("queues", {"q": QueueConfig("q", workers=2)}), **kw)


def test_a_new_broker_url_needs_a_restart():
    with pytest.raises(reload.ReloadRefused, match="broker URL changed: .* restart"):
        reload.check_compatible(svc(), replace(svc(), broker="redis://b/0"))


def test_other_changes_apply_in_place():
    reload.check_compatible(svc(), svc(shutdown_timeout=5))


@dataclass(eq=False)
class H:
    queue: str
    generation: int
    ready: bool = True
    retiring: bool = False
    started_at: float = 0.0


def test_old_workers_stop_only_as_new_ones_become_ready():
    cfg = svc()
    old = [H("q", 0, started_at=1), H("q", 0, started_at=2)]
    new = [H("q", 1, ready=True), H("q", 1, ready=False)]
    assert reload.to_retire(old + new, cfg, 1) == [old[0]]          # one replacement ready: the oldest goes
    new[1].ready = True
    assert reload.to_retire(old + new, cfg, 1) == old
    assert reload.complete(old + new, cfg, 1)


def test_workers_of_a_removed_queue_all_stop():
    gone = [H("gone", 0), H("gone", 0)]
    assert reload.to_retire(gone, svc(), 1) == gone
