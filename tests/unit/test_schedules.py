"""Schedules: their config, when their ticks fall (cron, every, DST), and the
supervisor's decisions about claiming them, on a fake clock with a fake broker
that keeps tick.lua's rules (the contract suite runs the real brokers)."""
import datetime as dt
import math

import pytest

from mpqueue.brokers import BrokerError, Tick
from mpqueue.core import envelope as jobmod
from mpqueue.core.config import ConfigError, QueueConfig, ServiceConfig, parse_config
from mpqueue.core.schedules import Cron, Every, ScheduleConfig, zone
from mpqueue.supervisor.schedules import Schedules
from tests.unit.test_supervisor import Broker as FakeBroker
from tests.unit.test_supervisor import started

BASE = {"broker": "redis://127.0.0.1:6379/0", "imports": ["app.tasks"], "queues": {"default": {}, "reports": {}}}


def parse(schedules):
    return parse_config({**BASE, "schedules": schedules}, "orders.yaml", "orders")


def error_of(schedules) -> str:
    with pytest.raises(ConfigError) as info:
        parse(schedules)
    return str(info.value)


def ms(*parts, tz="UTC"):
    return int(dt.datetime(*parts, tzinfo=zone(tz)).timestamp() * 1000)


def wall(t_ms, tz):
    return dt.datetime.fromtimestamp(t_ms / 1000, zone(tz)).strftime("%m-%d %H:%M%z")


# -- config ---------------------------------------------------------------------

def test_the_issues_example_parses_with_its_defaults():
    cfg = parse({"nightly-report": {"task": "shop.tasks:report", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                                    "queue": "reports", "args": [], "kwargs": {}},
                 "heartbeat": {"task": "shop.tasks:ping", "every": 30}})
    nightly, beat = cfg.schedules["nightly-report"], cfg.schedules["heartbeat"]
    assert (nightly.cron, nightly.timezone, nightly.queue, nightly.misfire_grace) == (
        "0 3 * * *", "Europe/Berlin", "reports", 60.0)
    assert (beat.every, beat.queue, beat.priority, beat.args) == (30.0, None, 0, ())


def test_no_schedules_is_an_empty_mapping():
    assert parse_config(BASE, "orders.yaml", "orders").schedules == {}
    assert parse(None).schedules == {}


@pytest.mark.parametrize("settings, expected", [
    ({"task": "a:b", "cron": "0 3 * *"}, "schedules.x.cron: expected five fields"),
    ({"task": "a:b", "cron": "0 3 * * * *"}, "schedules.x.cron: expected five fields"),
    ({"task": "a:b", "cron": "61 * * * *"}, "schedules.x.cron: expected a valid cron expression, got '61 * * * *'"),
    ({"task": "a:b", "cron": "@daily"}, "schedules.x.cron: expected five fields"),
    ({"task": "a:b", "cron": "0 0 30 2 *"}, "schedules.x.cron: expected a cron expression that ever fires"),
    ({"task": "a:b", "cron": "R 3 * * *"}, "schedules.x.cron: expected fixed fields: croniter's R (random)"),
    ({"task": "a:b", "cron": "0 3 * * R"}, "schedules.x.cron: expected fixed fields"),
    ({"task": "a:b", "cron": "r(0-5) * * * *"}, "schedules.x.cron: expected fixed fields"),
    ({"task": "a:b", "cron": "H * * * *"}, "schedules.x.cron: expected fixed fields"),
    ({"task": "a:b", "every": 315360000000}, "schedules.x.every: expected a number of seconds from 1 to 315576000"),
    ({"task": "a:b", "cron": 5}, "schedules.x.cron: expected five fields"),
    ({"task": "a:b", "cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "schedules.x.timezone: expected a time zone"),
    ({"task": "a:b", "cron": "0 3 * * *", "timezone": "../../etc/passwd"}, "schedules.x.timezone: expected"),
    ({"task": "a:b", "every": 0}, "schedules.x.every: expected a number of seconds from 1 to 315576000 (ten years), got 0"),
    ({"task": "a:b", "every": -5}, "schedules.x.every: expected a number of seconds from 1"),
    ({"task": "a:b", "every": float("nan")}, "schedules.x.every: expected a number of seconds from 1 to 315576000 (ten years), got nan"),
    ({"task": "a:b", "every": float("inf")}, "schedules.x.every: expected a number of seconds from 1 to 315576000 (ten years), got inf"),
    ({"task": "a:b", "every": True}, "schedules.x.every: expected a number of seconds from 1 to 315576000 (ten years), got True"),
    ({"task": "a:b", "every": "30"}, "schedules.x.every: expected a number of seconds from 1"),
    ({"task": "a:b", "every": 30, "timezone": "UTC"}, "schedules.x.timezone: applies to cron only"),
    ({"task": "nocolon", "every": 30}, "schedules.x.task: expected a 'module:function' name, got 'nocolon'"),
    ({"every": 30}, "schedules.x.task: expected a 'module:function' name, got None"),
    ({"task": "a:b"}, "schedules.x: give exactly one of cron or every"),
    ({"task": "a:b", "every": 30, "cron": "* * * * *"}, "schedules.x: give exactly one of cron or every"),
    ({"task": "a:b", "every": 30, "queue": "emails"}, "schedules.x.queue: expected a queue of this service "
                                                      "(default, reports), got 'emails'"),
    ({"task": "a:b", "every": 30, "misfire_grace": 0}, "schedules.x.misfire_grace: expected a number of seconds >= 1"),
    ({"task": "a:b", "every": 30, "misfire_grace": float("nan")}, "schedules.x.misfire_grace: expected"),
    ({"task": "a:b", "every": 30, "misfire_grace": False}, "schedules.x.misfire_grace: expected"),
    ({"task": "a:b", "every": 30, "priority": 10}, "schedules.x.priority: expected an integer from 0 to 9"),
    ({"task": "a:b", "every": 30, "args": {"a": 1}}, "schedules.x.args: expected a list"),
    ({"task": "a:b", "every": 30, "kwargs": [1]}, "schedules.x.kwargs: expected a mapping with string keys"),
    ({"task": "a:b", "every": 30, "evrey": 3}, "schedules.x.evrey: unknown key; did you mean 'every'?"),
])
def test_a_bad_schedule_is_one_line_naming_its_key(settings, expected):
    message = error_of({"x": settings})
    assert message.startswith("orders.yaml: " + expected), message
    assert "\n" not in message


def test_bad_schedule_names_and_shapes_are_refused():
    assert error_of({"a b": {"task": "a:b", "every": 30}}).startswith("orders.yaml: schedules.a b: expected a "
                                                                      "schedule name")
    assert error_of([1]).startswith("orders.yaml: schedules: expected a mapping")
    assert error_of({"x": "a:b"}).startswith("orders.yaml: schedules.x: expected a mapping")


def test_arguments_that_are_not_json_are_refused_at_load():
    assert "schedules.x: arguments of a:b" in error_of({"x": {"task": "a:b", "every": 30,
                                                               "args": [{1, 2}]}})


# -- tick times -----------------------------------------------------------------

def test_every_ticks_on_multiples_of_its_period_since_the_epoch():
    rule = Every(30)
    assert rule.latest(ms(2026, 1, 1, 0, 0, 45)) == ms(2026, 1, 1, 0, 0, 30)
    assert rule.latest(ms(2026, 1, 1, 0, 0, 30)) == ms(2026, 1, 1, 0, 0, 30)
    assert rule.next_after(ms(2026, 1, 1, 0, 0, 30)) == ms(2026, 1, 1, 0, 1)
    assert rule.count_between(ms(2026, 1, 1, 0, 0), ms(2026, 1, 1, 0, 2), 100) == 3
    assert rule.count_between(0, 10 ** 12, 7) == 7


def test_cron_follows_its_time_zones_wall_clock():
    rule = Cron("0 3 * * *", zone("Europe/Berlin"))
    t = rule.next_after(ms(2026, 1, 10, 12, 0))
    assert t == ms(2026, 1, 11, 2, 0)                              # 03:00 CET is 02:00 UTC
    assert rule.next_after(ms(2026, 7, 10, 12, 0)) == ms(2026, 7, 11, 1, 0)   # CEST
    assert rule.latest(ms(2026, 1, 11, 2, 0)) == ms(2026, 1, 11, 2, 0)
    assert rule.latest(ms(2026, 1, 11, 1, 59)) == ms(2026, 1, 10, 2, 0)


def test_a_time_the_spring_forward_gap_skips_fires_at_the_change_once():
    # Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST
    daily = Cron("30 2 * * *", zone("Europe/Berlin"))
    t = daily.next_after(ms(2026, 3, 28, 12, 0))
    assert wall(t, "Europe/Berlin") == "03-29 03:00+0200"
    assert wall(daily.next_after(t), "Europe/Berlin") == "03-30 02:30+0200"
    half_hourly = Cron("*/30 * * * *", zone("Europe/Berlin"))
    t, seen = ms(2026, 3, 29, 0, 0, tz="Europe/Berlin"), []
    for _ in range(4):
        t = half_hourly.next_after(t)
        seen.append(wall(t, "Europe/Berlin"))
    # 02:00 and 02:30 do not exist: they fall together with 03:00, which fires once
    assert seen == ["03-29 00:30+0100", "03-29 01:00+0100", "03-29 01:30+0100", "03-29 03:00+0200"]


def test_a_time_the_fall_back_repeats_fires_once_at_its_first_occurrence():
    # Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:00-03:00 happens twice
    daily = Cron("30 2 * * *", zone("Europe/Berlin"))
    t = daily.next_after(ms(2026, 10, 24, 12, 0))
    assert wall(t, "Europe/Berlin") == "10-25 02:30+0200"
    assert wall(daily.next_after(t), "Europe/Berlin") == "10-26 02:30+0100"
    half_hourly = Cron("*/30 * * * *", zone("Europe/Berlin"))
    t, seen = ms(2026, 10, 25, 1, 0, tz="Europe/Berlin"), []
    for _ in range(4):
        t = half_hourly.next_after(t)
        seen.append(wall(t, "Europe/Berlin"))
    assert seen == ["10-25 01:30+0200", "10-25 02:00+0200", "10-25 02:30+0200", "10-25 03:00+0100"]
    # the latest tick seen from inside the repeat is the first 02:30
    assert wall(daily.latest(ms(2026, 10, 25, 1, 45)), "Europe/Berlin") == "10-25 02:30+0200"


def test_counting_missed_cron_ticks_is_bounded():
    rule = Cron("* * * * *", zone("UTC"))
    assert rule.count_between(ms(2026, 1, 1, 0, 0), ms(2026, 1, 1, 1, 0), 10_000) == 59
    assert rule.count_between(ms(2026, 1, 1, 0, 0), ms(2026, 2, 1, 0, 0), 100) == 100


# -- the supervisor's decisions ---------------------------------------------------

class TickBroker(FakeBroker):
    """The test_supervisor fake, plus ticks kept by tick.lua's rules on its own clock."""

    def __init__(self, clock, skew=0.0):
        super().__init__()
        self.clock, self.skew, self.records, self.pushed = clock, skew, {}, []

    def tick(self, queue, name, tick_ms, envelope, priority, grace_ms):
        self._call("tick", queue, name, tick_ms)
        now = int((self.clock() + self.skew) * 1000)
        last = self.records.get((queue, name), -1)
        if last >= tick_ms:
            return Tick("taken", last, now)
        if tick_ms > now:
            return Tick("early", last, now)
        self.records[(queue, name)] = tick_ms
        if last < 0:
            return Tick("new", last, now)
        if now - tick_ms > grace_ms:
            return Tick("skipped", last, now)
        self.pushed.append((queue, jobmod.decode(envelope)))
        return Tick("fired", last, now)


def ran_before(broker, tick_s, *names, queue="default"):
    """The broker has a record of these schedules, claimed up to `tick_s`: they ran
    before this test's start (a schedule without a record starts with its next tick)."""
    for name in names or ("beat",):
        broker.records[(queue, name)] = int(tick_s * 1000)
    return broker


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


T0 = 1_800_000_000.0          # a multiple of 30 s


def every(seconds=30, **kw):
    return ScheduleConfig(name=kw.pop("name", "beat"), task="app.tasks:ping", every=seconds, **kw)


def schedules(clock, *cfgs, queues=("default",), tasks=None):
    return Schedules({c.name: c for c in cfgs}, list(queues), tasks if tasks is not None else {}, clock)


def test_a_due_tick_is_claimed_once_and_the_next_one_waited_for():
    clock = Clock(T0 + 5)
    broker, s = ran_before(TickBroker(clock), T0 - 30), schedules(clock, every(30))
    # Given a schedule that ran before, started 5 s after a tick: that tick is due (within the grace)
    assert s.due()
    s.run(broker)
    assert [j.scheduled_ms for _, j in broker.pushed] == [int(T0 * 1000)]
    # Then nothing is due until the next tick, 25 s later
    assert not s.due() and s.next_in() == pytest.approx(25.0, abs=0.01)
    clock.advance(25)
    s.run(broker)
    assert [j.scheduled_ms for _, j in broker.pushed] == [int(T0 * 1000), int((T0 + 30) * 1000)]
    assert s.totals() == (2, 0)


def test_two_nodes_on_one_broker_fire_each_tick_once():
    clock = Clock(T0 + 1)
    broker = ran_before(TickBroker(clock), T0)
    a, b = schedules(clock, every(1)), schedules(clock, every(1))
    for _ in range(20):
        for node in (a, b):
            if node.due():
                node.run(broker)
        clock.advance(0.25)
    ticks = [j.scheduled_ms for _, j in broker.pushed]
    # one job for each tick from T0+1 to T0+5, whichever node claimed it
    assert sorted(ticks) == [int((T0 + i) * 1000) for i in range(1, 6)]
    assert a.totals()[0] + b.totals()[0] == 5 and a.totals()[0] and b.totals()[0] == 0


def test_after_an_outage_only_the_latest_tick_fires_and_the_older_are_counted_skipped():
    clock = Clock(T0 + 1)
    broker = ran_before(TickBroker(clock), T0 - 30)
    s = schedules(clock, every(30))
    s.run(broker)
    # When the broker is unreachable for four ticks
    broker.down = True
    clock.advance(29 + 30 * 3)
    with pytest.raises(BrokerError):
        s.run(broker)
    broker.down = False
    clock.advance(5)
    s.run(broker)
    # Then the latest tick fires (5 s late: within the grace); the three before it are skipped
    assert [j.scheduled_ms for _, j in broker.pushed] == [int(T0 * 1000), int((T0 + 120) * 1000)]
    assert s.totals() == (2, 3)
    assert s.counters() == {("beat", "fired"): 2, ("beat", "skipped"): 3}


def test_a_tick_later_than_its_grace_is_skipped_not_fired():
    clock = Clock(T0 + 1)
    broker = ran_before(TickBroker(clock), T0 - 30)
    s = schedules(clock, every(600, misfire_grace=60))
    s.run(broker)
    broker.down = True
    clock.advance(600 + 120)
    with pytest.raises(BrokerError):
        s.run(broker)
    broker.down = False
    s.run(broker)
    assert len(broker.pushed) == 1 and s.totals() == (1, 1)


def test_a_restarted_node_fires_a_tick_missed_while_it_was_down_once():
    clock = Clock(T0 + 1)
    broker = ran_before(TickBroker(clock), T0 - 30)
    schedules(clock, every(30)).run(broker)
    # When every node is down across the next tick and one comes back 10 s after it
    clock.advance(39)
    again = schedules(clock, every(30))
    again.run(broker)
    assert [j.scheduled_ms for _, j in broker.pushed] == [int(T0 * 1000), int((T0 + 30) * 1000)]
    # and a second node starting now finds it taken
    schedules(clock, every(30)).run(broker)
    assert len(broker.pushed) == 2


def test_a_node_whose_clock_runs_ahead_waits_for_the_brokers():
    # Given a node 1 s ahead of the broker, starting just after a tick by its own clock
    clock = Clock(T0 + 30.2)
    broker = ran_before(TickBroker(clock, skew=-1.0), T0)
    s = schedules(clock, every(30))
    # When it claims that tick, the broker (at T0+29.2) says it is early: nothing fires
    s.run(broker)
    assert [c[3] for c in broker.calls if c[0] == "tick"] == [int((T0 + 30) * 1000)]
    assert broker.pushed == [] and broker.records == {("default", "beat"): int(T0 * 1000)}
    # Then it has learnt the broker's clock: the tick is due in 0.8 s, and fires then
    assert s.next_in() == pytest.approx(0.8, abs=0.05)
    clock.advance(0.8)
    s.run(broker)
    assert [j.scheduled_ms for _, j in broker.pushed] == [int((T0 + 30) * 1000)]


def test_the_queue_is_the_schedules_else_the_tasks_else_default():
    clock = Clock(T0 + 1)
    broker = ran_before(ran_before(TickBroker(clock), T0 - 30, "own"), T0 - 30, "task's", queue="reports")
    tasks = {"app.tasks:ping": {"queue": "reports"}}
    s = schedules(clock, every(30, name="own", queue="default"), every(30, name="task's"), queues=("default", "reports"),
                  tasks=tasks)
    s.run(broker)
    assert sorted((q, j.task) for q, j in broker.pushed) == [("default", "app.tasks:ping"),
                                                             ("reports", "app.tasks:ping")]
    unknown = schedules(clock, ScheduleConfig(name="x", task="app.tasks:other", every=30), queues=("default",),
                        tasks=tasks)
    assert unknown.queue_of(unknown.entries["x"].cfg) == "default"


def test_a_task_declared_on_a_queue_the_service_lacks_never_fires():
    clock = Clock(T0 + 1)
    broker = TickBroker(clock)
    s = schedules(clock, every(30), tasks={"app.tasks:ping": {"queue": "elsewhere"}})
    s.run(broker)
    assert broker.pushed == [] and not s.due()


def test_a_reload_keeps_unchanged_schedules_adds_new_ones_and_never_refires_a_tick():
    clock = Clock(T0 + 1)
    broker = TickBroker(clock)
    ran_before(broker, T0 - 30)
    s = schedules(clock, every(30))
    s.run(broker)
    # When reloaded with the same schedule changed (every 15 s) and another added
    s.configure({"beat": every(15), "new": every(30, name="new")}, ["default"])
    s.run(broker)
    # Then the changed one does not fire T0 again, and the new one starts with its next
    # tick: its latest is recorded, not fired (had it been renamed from "beat", T0 would
    # fire twice)
    assert [j.scheduled_ms for _, j in broker.pushed] == [int(T0 * 1000)]
    assert broker.records == {("default", "beat"): int(T0 * 1000), ("default", "new"): int(T0 * 1000)}
    clock.advance(14)
    s.run(broker)
    assert broker.records[("default", "beat")] == int((T0 + 15) * 1000)
    clock.advance(15)
    s.run(broker)
    assert sorted((j.scheduled_ms, q) for q, j in broker.pushed)[-2:] == [(int((T0 + 30) * 1000), "default")] * 2
    # and a removed schedule is no longer tried
    s.configure({}, ["default"])
    assert s.next_in() == math.inf


# -- in the supervisor's loop ---------------------------------------------------------

def test_the_supervisor_claims_due_ticks_in_its_loop_and_says_so_in_status(sup_with_schedule):
    s, clock, broker = sup_with_schedule
    s.maintain()
    assert [c[0] for c in broker.calls].count("tick") == 1
    assert "ticks 1 fired, 0 skipped" in s.status_line()
    # and its loop wakes for the next tick
    assert s.next_timeout() == pytest.approx(min(1.0, s.schedules.next_in()), abs=0.01)


def test_while_the_broker_gate_is_shut_a_due_tick_waits_without_spinning(sup_with_schedule):
    s, clock, broker = sup_with_schedule
    broker.down = True
    s.maintain()
    assert s.schedules.due() and not s.gate.may_call()
    assert s.next_timeout() > 0.5


@pytest.fixture
def sup_with_schedule(monkeypatch, tmp_path):
    from mpqueue.supervisor import Supervisor, reload
    from tests.unit.test_supervisor import Spawner
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPQUEUE_RUNTIME_DIR", str(tmp_path))
    clock = Clock(T0 + 1)
    cfg = ServiceConfig(name="svc", broker="redis://127.0.0.1:1/0", imports=("tasks",),
                        queues={"default": QueueConfig("default", workers=1)}, schedules={"beat": every(30)})
    s = Supervisor(cfg, clock=clock, spawn=Spawner(clock), reap=lambda: [], wall=clock)
    broker = ran_before(TickBroker(clock), T0 - 30)
    s.attach(broker)
    s.reload_status = reload.ReloadStatus(s.cfg.name)
    started(s)
    return s, clock, broker


def test_the_metrics_render_tick_counters_by_schedule_and_outcome():
    from prometheus_client.parser import text_string_to_metric_families
    from mpqueue.supervisor.metrics import Snapshot, render
    text = render(Snapshot(ticks={("beat", "fired"): 4, ('evil"\n', "skipped"): 1}), {}).decode()
    fam = {f.name: f for f in text_string_to_metric_families(text)}["mpqueue_schedule_ticks"]
    assert {(s.labels["schedule"], s.labels["outcome"]): s.value for s in fam.samples} == {
        ("beat", "fired"): 4, ('evil"\n', "skipped"): 1}


def test_mpqctl_job_shows_the_tick_of_a_job_a_schedule_pushed():
    from mpqueue.ops.jobview import job_info
    _, env = jobmod.encode("a:b", scheduled_ms=1_800_000_000_000)
    assert job_info("j", "q", {"state": "ready", "envelope": env})["scheduled_for"] == 1_800_000_000.0
    _, plain = jobmod.encode("a:b")
    assert "scheduled_for" not in job_info("j", "q", {"state": "ready", "envelope": plain})
    assert jobmod.decode(plain).scheduled_for is None


def test_across_daylight_saving_changes_the_supervisor_fires_as_documented():
    # Given a half-hourly cron schedule in Europe/Berlin, on a clock the test moves
    # through both changes of 2026 in 30 s steps
    def run_through(start, hours):
        clock = Clock(ms(*start, tz="Europe/Berlin") / 1000)
        broker = ran_before(TickBroker(clock), ms(*start[:3], 0, 30, tz="Europe/Berlin") / 1000, "half")
        s = schedules(clock, ScheduleConfig(name="half", task="a:b", cron="*/30 * * * *", timezone="Europe/Berlin"))
        for _ in range(hours * 120):
            if s.due():
                s.run(broker)
            clock.advance(30)
        return [wall(j.scheduled_ms, "Europe/Berlin")[6:] for _, j in broker.pushed]
    # Then in spring 02:00 and 02:30 do not exist and fall together at 03:00, which fires once
    assert run_through((2026, 3, 29, 1, 0, 10), 3) == ["01:00+0100", "01:30+0100", "03:00+0200", "03:30+0200",
                                                       "04:00+0200", "04:30+0200"]
    # and in autumn the repeated 02:00 and 02:30 fire once, at their first occurrence
    # (four hours of time from 01:00:10 CEST end just before 04:00 CET)
    assert run_through((2026, 10, 25, 1, 0, 10), 4) == ["01:00+0200", "01:30+0200", "02:00+0200", "02:30+0200",
                                                        "03:00+0100", "03:30+0100"]
