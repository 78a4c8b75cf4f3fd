"""Model-based, randomized: random sequences of the broker lifecycle (push at
any priority, now or later; reserve; ack; retry; release; fail; extend; renew;
leases that end and are reaped; stale tokens; requeue of failed jobs) against
each real broker through its interface, checked after every step against a
plain model of where every job is.

Invariants (docs/explanation/delivery.md): every pushed job is in exactly one
state, and the broker's counts and find() agree with the model; no job
disappears; a reservation counts an attempt and a release refunds it; a token
that no longer owns its job changes nothing; higher priorities are reserved
first; an expired lease spends the attempt and the job comes back (or fails as
`lost` once its attempts are spent).

CI runs a fixed corpus (derandomized); before a release run a longer, random
one: MPQ_PROPERTY_EXAMPLES=2000 MPQ_PROPERTY_RANDOM=1 pytest tests/property."""
from __future__ import annotations

import json
import os
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, multiple, rule, \
    run_state_machine_as_test

from mpqueue.brokers import Ack, PushItem, open_broker
from mpqueue.core import envelope as jobmod
from mpqueue.core.config import QueueConfig
from mpqueue.supervisor.recovery import Recovery
from tests.support import wait_for

Q = "model"
RETRIES = 2
LATER = 3600.0           # a delay that never comes due during a run
SETTINGS = settings(max_examples=int(os.environ.get("MPQ_PROPERTY_EXAMPLES", "30")), stateful_step_count=25,
                    deadline=None, derandomize=not os.environ.get("MPQ_PROPERTY_RANDOM"),
                    suppress_health_check=list(HealthCheck))


class BrokerModel(RuleBasedStateMachine):
    url_factory = None               # set by each test: a fresh, empty broker per run
    held = Bundle("held")

    @initialize()
    def open(self):
        self.broker = open_broker(self.url_factory())
        self.recovery = Recovery(self.broker, {Q: QueueConfig(name=Q, retries=RETRIES, retry_delay=0)})
        self.jobs: dict[str, dict] = {}          # id -> {"state", "prio", "attempts", "token", "consumer"}
        self.done = 0

    def teardown(self):
        if hasattr(self, "broker"):
            self.broker.close()

    # -- the model's view
    def in_state(self, state):
        return [i for i, j in self.jobs.items() if j["state"] == state]

    def held_by(self, job_id, token):
        j = self.jobs[job_id]
        return j["state"] == "held" and j["token"] == token

    # -- producers
    @rule(prio=st.integers(0, 9), later=st.booleans(), n=st.integers(1, 3))
    def push(self, prio, later, n):
        items = []
        for _ in range(n):
            job_id, env = jobmod.encode("model:task", [uuid.uuid4().hex[:6]], priority=prio)
            items.append(PushItem(env, prio, LATER if later else 0))
            self.jobs[job_id] = {"state": "scheduled" if later else "ready", "prio": prio, "attempts": 0,
                                 "token": None, "consumer": None}
        self.broker.push(Q, items)

    # -- consumers
    @rule(target=held, count=st.integers(1, 4), consumer=st.sampled_from(["c1", "c2"]))
    def reserve(self, count, consumer):
        ready_before = self.in_state("ready")
        reserved, _ = self.broker.reserve(Q, consumer, count, 30.0)
        assert len(reserved) == min(count, len(ready_before))
        taken = []
        for r in reserved:
            job = jobmod.decode(r.envelope, Q, r.token)
            j = self.jobs[job.id]
            assert j["state"] == "ready", f"{job.id} reserved from {j['state']}"
            j.update(state="held", attempts=j["attempts"] + 1, token=r.token, consumer=consumer)
            assert job.attempts == j["attempts"]
            taken.append((job.id, r.token))
        left = [self.jobs[i]["prio"] for i in self.in_state("ready")]
        assert all(self.jobs[i]["prio"] >= max(left, default=0) for i, _ in taken), "priority order"
        return multiple(*taken)

    @rule(h=consumes(held))
    def ack(self, h):
        job_id, token = h
        owned = self.held_by(job_id, token)
        assert self.broker.ack(Q, [Ack(job_id, token, json.dumps({"ok": 1}), 60)]) == int(owned)
        if owned:
            self.jobs[job_id].update(state="done", token=None)
            self.done += 1

    @rule(h=consumes(held), later=st.booleans())
    def retry(self, h, later):
        job_id, token = h
        owned = self.held_by(job_id, token)
        assert self.broker.retry(Q, job_id, token, LATER if later else 0, '{"type": "error"}') == owned
        if owned:
            self.jobs[job_id].update(state="scheduled" if later else "ready", token=None)

    @rule(h=consumes(held))
    def release(self, h):
        job_id, token = h
        owned = self.held_by(job_id, token)
        assert self.broker.release(Q, job_id, token) == owned
        if owned:
            j = self.jobs[job_id]
            j.update(state="ready", token=None, attempts=max(0, j["attempts"] - 1))

    @rule(h=consumes(held))
    def fail(self, h):
        job_id, token = h
        owned = self.held_by(job_id, token)
        assert self.broker.fail(Q, job_id, token, '{"type": "error"}') == owned
        if owned:
            self.jobs[job_id].update(state="failed", token=None)

    @rule(h=held)
    def extend(self, h):
        assert self.broker.extend(Q, h[0], h[1], 30.0) == self.held_by(*h)

    @rule(consumer=st.sampled_from(["c1", "c2"]))
    def renew(self, consumer):
        mine = [i for i in self.in_state("held") if self.jobs[i]["consumer"] == consumer]
        assert self.broker.renew(Q, [consumer], 30.0) == len(mine)

    @rule(count=st.integers(1, 3))
    def node_dies(self, count):
        """A node reserves with a lease that ends at once, and dies: the reaper brings the jobs back."""
        reserved, _ = self.broker.reserve(Q, "dead-node/1", count, 0.001)
        for r in reserved:
            job = jobmod.decode(r.envelope, Q, r.token)
            j = self.jobs[job.id]
            assert j["state"] == "ready"
            j.update(state="held", attempts=j["attempts"] + 1, token=r.token, consumer="dead-node/1")
        if reserved:
            wait_for(lambda: len(self.broker.expired(Q, 100)) >= len(reserved), 5, what="the leases to end")
        self.recovery.reap_expired(Q)
        assert not self.recovery.pending()
        for r in reserved:
            j = self.jobs[jobmod.job_id(r.envelope)]
            j.update(state="ready" if j["attempts"] <= RETRIES else "failed", token=None, consumer=None)

    @rule()
    def requeue_failed(self):
        moved = self.broker.requeue_failed(Q, None)
        assert moved == len(self.in_state("failed"))
        for i in self.in_state("failed"):
            self.jobs[i].update(state="ready", attempts=0)

    # -- after every step
    @invariant()
    def counts_agree(self):
        if not hasattr(self, "broker"):
            return
        c = self.broker.counts(Q)
        model = {s: len(self.in_state(s)) for s in ("ready", "scheduled", "held", "failed")}
        assert (c["ready"], c["scheduled"], c["running"], c["failed"], c["done_total"]) == \
            (model["ready"], model["scheduled"], model["held"], model["failed"], self.done)

    @invariant()
    def every_job_is_where_the_model_says(self):
        if not hasattr(self, "broker"):
            return
        names = {"held": "running"}
        for job_id, j in self.jobs.items():
            found = self.broker.find(Q, job_id)
            assert found is not None, f"job {job_id} disappeared ({j['state']})"
            assert found["state"] == names.get(j["state"], j["state"]), (job_id, found["state"], j)


@pytest.fixture
def fresh_url(tmp_path, redis_server, request):
    """A factory of empty brokers of the test's kind."""
    counter = iter(range(1_000_000))

    def redis():
        redis_server.client.flushall()
        return redis_server.url

    def sqlite():
        return f"sqlite://{tmp_path}/model-{next(counter)}.db"
    return {"redis": redis, "sqlite": sqlite}[request.param]


@pytest.mark.parametrize("fresh_url", ["redis", "sqlite"], indirect=True)
def test_the_broker_keeps_every_job_where_the_model_says(fresh_url):
    BrokerModel.url_factory = staticmethod(fresh_url)
    run_state_machine_as_test(BrokerModel, settings=SETTINGS)
