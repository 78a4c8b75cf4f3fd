"""Schedules end to end: real `mpqueue run` supervisors, on each broker. Two of
one service (as on two hosts: each its own runtime directory, one broker) fire
each tick once; a restart inside misfire_grace fires the missed tick once; a
reload adds and removes schedules; bad input is one line and exit 78; `mpqctl
schedules --json` lists them."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.e2e.test_web import CHROMEDRIVER, CHROMIUM, browser, chromium, text_of, web  # noqa: F401 - fixtures
from tests.support import TASKS, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.each_broker]

TICK_TASKS = TASKS + '''

@mpqueue.task(queue="default")
def tick(tag):
    j = mpqueue.current_job()
    ms = int(j.scheduled_for.timestamp() * 1000)
    r().rpush("test:ticks", f"{tag} {ms} {os.getppid()}")
'''


def every(seconds, tag, **kw):
    return {"task": "testtasks:tick", "every": seconds, "args": [tag], **kw}


def ticks(rdb, tag=None) -> list[tuple[str, int, int]]:
    """(tag, tick ms, supervisor pid) of every tick job run so far."""
    out = []
    for entry in rdb.lrange("test:ticks", 0, -1):
        t, ms, pid = entry.split()
        if tag is None or t == tag:
            out.append((t, int(ms), int(pid)))
    return out


def status_ticks(svc) -> tuple[int, int]:
    """(fired, skipped) from the service's latest STATUS= line that has them."""
    for m in reversed(svc.read_messages()):
        found = re.search(r"ticks (\d+) fired, (\d+) skipped", m)
        if found:
            return int(found[1]), int(found[2])
    return 0, 0


def test_two_supervisors_of_one_service_run_each_tick_once(service, rdb):
    # Given two nodes of one service on one broker, with a 1 s schedule
    config = {"schedules": {"beat": every(1, "beat")}, "queues": {"default": {"workers": 2}}}
    a = service(config, tasks=TICK_TASKS).start()
    b = service(config, tasks=TICK_TASKS).start()
    # When they run for a minute
    wait_for(lambda: len(ticks(rdb)) >= 60, 120, 0.2, what="60 tick jobs")
    a.stop()
    b.stop()
    seen = ticks(rdb)
    # Then every tick's job ran exactly once, whichever node claimed it, with no tick missing
    times = [ms for _, ms, _ in seen]
    assert len(times) == len(set(times)), sorted(times)
    first, last = min(times), max(times)
    assert sorted(times) == list(range(first, last + 1, 1000))
    assert all(ms % 1000 == 0 for ms in times)          # ticks on whole seconds since the epoch
    # and both nodes tried: their STATUS lines count the ticks they fired, which add up
    fired = status_ticks(a)[0] + status_ticks(b)[0]
    assert fired <= len(times)


def test_a_node_killed_mid_run_loses_no_tick(service, rdb):
    # Given two nodes of one service with a 1 s schedule (short job leases, so a job the
    # killed node's worker held comes back quickly)
    config = {"schedules": {"beat": every(1, "beat")}, "queues": {"default": {"workers": 1, "timeout": 3}}}
    a = service(config, tasks=TICK_TASKS).start()
    b = service(config, tasks=TICK_TASKS).start()
    wait_for(lambda: len(ticks(rdb)) >= 3, 20, what="3 tick jobs")
    # When one node and its workers are killed outright
    os.killpg(a.proc.pid, signal.SIGKILL)
    killed_at = time.time() * 1000
    # Then the other goes on, and every tick from the first to well after the kill ran once
    def window():
        times = sorted(ms for _, ms, _ in ticks(rdb))
        return times if times[-1] > killed_at + 4000 and times == list(range(times[0], times[-1] + 1, 1000)) \
            else None
    times = wait_for(window, 30, 0.1, what="a gapless run of ticks past the kill")
    b.stop()
    assert len(times) == len(set(times))
    assert all(ms % 1000 == 0 for ms in times)


def test_a_restart_inside_misfire_grace_fires_the_missed_tick_once_and_skips_the_older(service, rdb):
    # Given a node with a 2 s schedule that has fired
    config = {"schedules": {"beat": every(2, "beat", misfire_grace=60)}}
    svc = service(config, tasks=TICK_TASKS).start()
    wait_for(lambda: ticks(rdb), 15, what="a first tick job")
    svc.stop()
    before = {ms for _, ms, _ in ticks(rdb)}
    stopped_at = time.time()
    # When it is down for more than two ticks, then starts again
    wait_for(lambda: time.time() > stopped_at + 5, 10, what="5 s of downtime")
    restarted_at = time.time()
    svc.start()
    ready_at = time.time()
    # Then the latest tick missed fires once, late; the ones before it are skipped and counted
    late = wait_for(lambda: [ms for _, ms, _ in ticks(rdb) if ms not in before], 15, what="the missed tick's job")
    latest_missed = int(restarted_at // 2 * 2 * 1000)
    # (ticks start once the workers are ready: a slow start may cross another tick)
    assert latest_missed <= late[0] <= ready_at * 1000 + 500
    wait_for(lambda: status_ticks(svc)[1] >= 1, 10, what="skipped ticks in STATUS")
    missed = [ms for ms in range(max(before) + 2000, late[0], 2000)]
    assert missed and not set(missed) & {ms for _, ms, _ in ticks(rdb)}
    wait_for(lambda: len(ticks(rdb)) >= len(before) + 2, 10, what="the next tick")
    svc.stop()
    times = [ms for _, ms, _ in ticks(rdb)]
    assert len(times) == len(set(times))


def test_a_restart_outside_misfire_grace_skips_the_missed_tick(service, rdb):
    # Given a node with a 10 s schedule and a grace of 1 s, which has fired
    config = {"schedules": {"slow": every(10, "slow", misfire_grace=1)}}
    svc = service(config, tasks=TICK_TASKS).start()
    first = wait_for(lambda: ticks(rdb), 25, what="a first tick job")[0][1]
    svc.stop()
    # When it starts again 3 s to 7 s after the next tick (more than the grace late)
    wait_for(lambda: first + 13_000 <= time.time() * 1000 <= first + 17_000, 25, interval=0.05,
             what="a start well after the next tick")
    svc.start()
    # Then that tick is skipped (counted), and the one after it fires on time
    wait_for(lambda: status_ticks(svc)[1] >= 1, 10, what="the skipped tick in STATUS")
    nxt = wait_for(lambda: [ms for _, ms, _ in ticks(rdb) if ms != first], 15, what="the following tick")
    assert nxt == [first + 20_000]


def reload_cmd(svc):
    return subprocess.run([sys.executable, "-m", "mpqueue.ops.cli", "reload", "--config", str(svc.config_path),
                           "--timeout", "50"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MPQUEUE_RUNTIME_DIR": str(svc.tmp / "run")})


def test_a_reload_adds_and_removes_schedules_without_firing_a_tick_twice(service, rdb):
    # Given a service with schedule "old"
    svc = service({"schedules": {"old": every(1, "old")}}, tasks=TICK_TASKS).start()
    wait_for(lambda: ticks(rdb, "old"), 15, what="old's ticks")
    # When it is reloaded with "old" removed and "new" added
    cfg = yaml.safe_load(svc.config_path.read_text())
    cfg["schedules"] = {"new": every(1, "new")}
    svc.config_path.write_text(yaml.safe_dump(cfg))
    result = reload_cmd(svc)
    assert result.returncode == 0, result.stderr
    reloaded_ms = time.time() * 1000
    # Then "new" fires, and "old" no more
    wait_for(lambda: len(ticks(rdb, "new")) >= 3, 15, what="new's ticks")
    assert all(ms <= reloaded_ms for _, ms, _ in ticks(rdb, "old"))
    # and a reload that changes nothing fires nothing twice
    assert reload_cmd(svc).returncode == 0
    wait_for(lambda: len(ticks(rdb, "new")) >= 5, 15, what="more of new's ticks")
    svc.stop()
    for tag in ("old", "new"):
        times = [ms for _, ms, _ in ticks(rdb, tag)]
        assert len(times) == len(set(times)), tag


def test_a_schedule_renamed_by_a_reload_of_both_nodes_does_not_fire_a_claimed_tick_again(service, rdb):
    # Given two nodes of one service running schedule "before" every 5 s
    config = {"schedules": {"before": every(5, "r")}}
    a = service(config, tasks=TICK_TASKS).start()
    b = service(config, tasks=TICK_TASKS).start()
    # When, just after one of its ticks ran, both are reloaded with it renamed "after"
    wait_for(lambda: [ms for _, ms, _ in ticks(rdb, "r") if time.time() * 1000 - ms < 1500], 15, 0.05,
             what="a tick that just ran")
    for svc in (a, b):
        cfg = yaml.safe_load(svc.config_path.read_text())
        cfg["schedules"] = {"after": every(5, "r")}
        svc.config_path.write_text(yaml.safe_dump(cfg))
        result = reload_cmd(svc)
        assert result.returncode == 0, result.stderr
    # Then "after" starts with the next tick: the one "before" claimed does not run again
    wait_for(lambda: len(ticks(rdb, "r")) >= 3, 20, what="ticks after the rename")
    a.stop()
    b.stop()
    times = [ms for _, ms, _ in ticks(rdb, "r")]
    assert len(times) == len(set(times)), sorted(times)
    assert sorted(times) == list(range(min(times), max(times) + 1, 5000))


def run_cli(module, *args, env=None):
    return subprocess.run([sys.executable, "-m", f"mpqueue.ops.{module}", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("bad, key", [
    ({"task": "testtasks:tick", "cron": "0 3 * * * *"}, "schedules.bad.cron"),
    ({"task": "testtasks:tick", "cron": "0 3 * * *", "timezone": "Nowhere/Land"}, "schedules.bad.timezone"),
    ({"task": "testtasks:tick", "every": 0}, "schedules.bad.every"),
    ({"task": "testtasks:tick", "every": 315360000000}, "schedules.bad.every"),
    ({"task": "testtasks:tick", "cron": "R 3 * * *"}, "schedules.bad.cron"),
    ({"task": "testtasks:tick", "every": 5, "queue": "nope"}, "schedules.bad.queue"),
])
def test_a_bad_schedule_stops_check_and_run_with_one_line_and_exit_78(service, tmp_path, bad, key):
    svc = service({"schedules": {"bad": bad}}, tasks=TICK_TASKS)
    for command in ("check", "run"):
        result = run_cli("cli", command, "--config", str(svc.config_path),
                         env={"MPQUEUE_RUNTIME_DIR": str(tmp_path / "run")})
        assert result.returncode == 78, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and key in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_every_schedule_check_accepts_is_shown_by_mpqctl_without_a_traceback(service, tmp_path):
    # Given the extremes `check` accepts: the longest every, rare and year-end crons
    from mpqueue.core.schedules import MAX_EVERY
    config = {"schedules": {"longest": {"task": "testtasks:tick", "every": MAX_EVERY, "args": ["x"]},
                            "leap-monday": {"task": "testtasks:tick", "cron": "0 0 29 2 1", "args": ["x"]},
                            "year-end": {"task": "testtasks:tick", "cron": "59 23 31 12 *", "timezone": "Pacific/Kiritimati",
                                         "args": ["x"]}}}
    svc = service(config, tasks=TICK_TASKS)
    env = {"MPQUEUE_RUNTIME_DIR": str(tmp_path / "run")}
    assert run_cli("cli", "check", "--config", str(svc.config_path), env=env).returncode == 0
    # Then mpqctl shows each, as text and as JSON
    for extra in ([], ["--json"]):
        result = run_cli("ctl", "--config", str(svc.config_path), "schedules", *extra, env=env)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert all(name in result.stdout for name in ("longest", "leap-monday", "year-end"))


def test_mpqctl_schedules_lists_last_and_next_ticks_as_json(service, rdb):
    config = {"schedules": {"beat": every(1, "beat"),
                            "nightly": {"task": "testtasks:tick", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                                        "args": ["nightly"]}}}
    svc = service(config, tasks=TICK_TASKS).start()
    wait_for(lambda: ticks(rdb, "beat"), 15, what="a tick job")
    before = time.time()
    result = run_cli("ctl", "--config", str(svc.config_path), "schedules", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    now = time.time()
    beat, nightly = rows["beat"], rows["nightly"]
    assert (beat["every"], beat["queue"], beat["task"]) == (1.0, "default", "testtasks:tick")
    # (next_at is as of mpqctl's run, somewhere between before and now)
    assert now - 5 < beat["last_fired_at"] <= now and before < beat["next_at"] <= now + 2
    assert (nightly["cron"], nightly["timezone"], nightly["last_fired_at"]) == ("0 3 * * *", "Europe/Berlin", None)
    assert now < nightly["next_at"] <= now + 86400
    text = run_cli("ctl", "--config", str(svc.config_path), "schedules")
    assert text.returncode == 0 and "beat" in text.stdout and 'cron "0 3 * * *" Europe/Berlin' in text.stdout
    # without a config there is nothing to list: one line, exit 1
    bare = run_cli("ctl", "--broker", svc.broker_url, "schedules")
    assert bare.returncode == 1 and bare.stderr.startswith("mpqctl: schedules live in the service's config")


def test_the_metrics_count_fired_ticks_and_promtool_accepts_them(service, rdb):
    from tests.e2e.test_metrics import scrape, value
    from tests.support import free_port
    port = free_port()
    svc = service({"schedules": {"beat": every(1, "beat")}, "metrics": {"listen": f"127.0.0.1:{port}"}},
                  tasks=TICK_TASKS).start()
    wait_for(lambda: value(scrape(port), "mpqueue_schedule_ticks_total", schedule="beat", outcome="fired") >= 2,
             20, interval=0.2, what="fired ticks in the metrics")
    if shutil.which("promtool"):
        done = subprocess.run(["promtool", "check", "metrics"], input=scrape(port), capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
    assert svc.stop() == 0


@pytest.mark.skipif(not os.environ.get("CI") and not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver")
def test_the_dashboard_lists_schedules_with_their_last_and_next_tick(service, rdb, web, browser):  # noqa: F811
    config = {"schedules": {"beat": every(1, "beat"),
                            "nightly": {"task": "testtasks:tick", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                                        "args": ["n"]}}}
    svc = service(config, tasks=TICK_TASKS).start()
    wait_for(lambda: ticks(rdb, "beat"), 15, what="a tick job")
    dash = web(svc.config_path)
    browser.get(dash.url + "/")
    wait_for(lambda: "beat" in text_of(browser, "#schedules"), 15, 0.1, what="the schedules table")
    beat = text_of(browser, '#schedules tr[data-key="p|beat"]')
    nightly = text_of(browser, '#schedules tr[data-key="p|nightly"]')
    assert "every 1 s" in beat and "testtasks:tick" in beat and "never" not in beat
    assert 'cron "0 3 * * *" Europe/Berlin' in nightly and "never" in nightly and "in " in nightly
