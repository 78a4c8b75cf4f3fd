"""mpqueue@.service under a real systemd 252: readiness, STATUS, reload, watchdog, stop."""
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from mpqueue import Client
from mpqueue.brokers import open_broker
from tests.support import TASKS, wait_for
from tests.systemd.harness import Systemd, unavailable

REPO = Path(__file__).resolve().parents[2]
UNIT = "mpqueue@svc.service"
pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"no throwaway systemd: {unavailable()}")


def dropin(config_dir: Path, redis_url: str) -> str:
    # What the test changes in the shipped unit, and why: there is no `mpqueue` system
    # user on a test machine; the code under test lives in a virtualenv and a temp dir
    # that PrivateTmp/ProtectHome would hide; /etc is the machine's, so no
    # ConfigurationDirectory; and a short watchdog so the watchdog test is quick.
    return f"""[Service]
User=root
Group=root
PrivateTmp=no
ProtectHome=no
PrivateUsers=no
ConfigurationDirectory=
Environment=MPQUEUE_CONFIG_DIR={config_dir} PYTHONPATH={REPO} MPQ_TEST_REDIS={redis_url}
WatchdogSec=2s
TimeoutAbortSec=3s
"""


@pytest.fixture(scope="module")
def sd(redis_server, tmp_path_factory):
    config_dir = tmp_path_factory.mktemp("etc-mpqueue")
    (config_dir / "code").mkdir()
    (config_dir / "code" / "testtasks.py").write_text(TASKS)
    unit = (REPO / "packaging/systemd/mpqueue@.service").read_text()
    unit = unit.replace("/usr/bin/mpqueue", f"{sys.executable} -m mpqueue.ops.cli")
    systemd = Systemd().start()
    try:
        systemd.install("mpqueue@.service", unit)
        systemd.install("mpqueue@.service.d/test.conf", dropin(config_dir, redis_server.url))
        systemd.config_dir = config_dir
        yield systemd
    finally:
        systemd.stop()
        shutil.rmtree("/var/lib/mpqueue/svc", ignore_errors=True)
        try:
            Path("/var/lib/mpqueue").rmdir()
        except OSError:
            pass


def write_config(sd, redis_url, workers=2, extra="", lease_grace=2, **queue):
    cfg = {"broker": redis_url, "path": [str(sd.config_dir / "code")], "imports": ["testtasks"],
           "log": {"level": "info", "format": "text"}, "shutdown_timeout": 10, "lease_grace": lease_grace,
           "queues": {"default": {"workers": workers, **queue}}}
    (sd.config_dir / "svc.yaml").write_text(yaml.safe_dump(cfg) + extra)


def unit_pids(sd):
    cgroup = sd.prop(UNIT, "ControlGroup")
    procs = sd.cgroup / cgroup.lstrip("/") / "cgroup.procs"
    return {int(p) for p in procs.read_text().split()} if procs.exists() else set()


def workers(sd):
    main = sd.host_pid(int(sd.prop(UNIT, "MainPID")))
    return unit_pids(sd) - {main}


@pytest.fixture
def running(sd, redis_url, rdb):
    write_config(sd, redis_url)
    sd.ctl("start", UNIT)
    yield sd
    sd.ctl("stop", UNIT, check=False)
    sd.ctl("reset-failed", UNIT, check=False)


def test_start_returns_after_ready_and_status_shows_live_counts(running, redis_url, rdb):
    # `systemctl start` returned: the unit is active, with both workers up
    assert running.prop(UNIT, "ActiveState") == "active"
    assert len(workers(running)) == 2
    Client(redis_url).push("default", "testtasks:record", args=["x"])
    wait_for(lambda: "1 done" in running.prop(UNIT, "StatusText"), 10, what="STATUS with the done job")
    assert running.prop(UNIT, "StatusText").startswith("2/2 workers")
    assert "Status:" in running.ctl("status", UNIT, check=False).stdout


def test_reload_replaces_every_worker_without_interrupting_a_job(running, redis_url, rdb):
    old = workers(running)
    Client(redis_url).push("default", "testtasks:sleep_record", args=["long", 2.0])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="long job start")
    write_config(running, redis_url, workers=3)
    running.ctl("reload", UNIT)                       # synchronous: new workers serve
    wait_for(lambda: len(p := workers(running)) == 3 and not (p & old), 15, what="3 new workers only")
    assert rdb.lrange("test:runs", 0, -1) == ["long"] and rdb.lrange("test:starts", 0, -1) == ["long"]
    assert running.prop(UNIT, "ActiveState") == "active"


def test_reload_with_an_invalid_config_fails_and_old_workers_keep_serving(running, redis_url, rdb):
    old = workers(running)
    write_config(running, redis_url, extra="bogus: 1\n")
    result = running.ctl("reload", UNIT, check=False)
    assert result.returncode != 0
    assert "bogus" in running.journal(UNIT)
    assert workers(running) == old and running.prop(UNIT, "ActiveState") == "active"
    Client(redis_url).push("default", "testtasks:record", args=["served"])
    wait_for(lambda: rdb.llen("test:runs") == 1, 10, what="job served by the old workers")


def test_a_frozen_supervisor_is_killed_by_the_watchdog_and_restarted_without_losing_a_job(sd, redis_url, rdb):
    # A short lease (timeout 3 s + lease_grace 1 s from the reservation) so that the job
    # the killed service held comes back soon after the restart; no retry delay.
    write_config(sd, redis_url, lease_grace=1, timeout=3, retry_delay=0)
    broker = open_broker(redis_url)
    try:
        sd.ctl("start", UNIT)
        restarts = int(sd.prop(UNIT, "NRestarts"))
        client = Client(redis_url)
        # Its first attempt outlasts the frozen supervisor by far, so it is still running,
        # held by a worker, when the watchdog kills the service (workers die with it).
        held = client.push("default", "testtasks:slow_first", args=["held"])
        first = wait_for(lambda: rdb.lrange("test:starts", 0, -1), 10, what="the held job's start")
        old = workers(sd)
        tag, attempt, ns_pid = first[0].split()
        assert (tag, attempt) == ("held", "1") and sd.host_pid(int(ns_pid)) in old
        sd.ctl("kill", "--kill-who=main", "-s", "SIGSTOP", UNIT)
        assert broker.find("default", held)["state"] == "running"
        frozen = [client.push("default", "testtasks:record", args=[f"while-frozen-{i}"]) for i in range(3)]

        wait_for(lambda: int(sd.prop(UNIT, "NRestarts")) == restarts + 1 and sd.prop(UNIT, "ActiveState") == "active",
                 20, what="watchdog restart")
        assert "Watchdog timeout" in sd.journal(UNIT)
        assert not any(Path(f"/proc/{pid}").exists() for pid in old)        # the old workers died with it
        # The restarted service finds the lease ended, hands the job back, and runs it to the end.
        done = wait_for(lambda: (f := broker.find("default", held)) and f["state"] == "done" and f, 20,
                        what="the held job done after the restart")
        assert done["attempts"] == 2
        starts = rdb.lrange("test:starts", 0, -1)
        assert starts[0] == first[0] and len(starts) == 2
        tag, attempt, ns_pid = starts[1].split()
        assert (tag, attempt) == ("held", "2") and sd.host_pid(int(ns_pid)) in workers(sd)
        assert "held" in rdb.lrange("test:runs", 0, -1)
        assert any("its lease expired" in line and held in line for line in sd.journal(UNIT).splitlines())
        # Nothing else was lost: the jobs pushed while the supervisor was frozen all ran, and
        # nothing is left waiting, held or failed.
        wait_for(lambda: all(broker.find("default", j)["state"] == "done" for j in frozen), 20,
                 what="the jobs pushed while frozen done")
        ran = {r.split()[0] for r in rdb.lrange("test:runs", 0, -1)}
        assert ran == {"held"} | {f"while-frozen-{i}" for i in range(3)}
        assert broker.counts("default") == {"ready": 0, "scheduled": 0, "running": 0, "failed": 0,
                                            "done_total": 4, "failed_total": 0}
    finally:
        broker.close()
        sd.ctl("stop", UNIT, check=False)
        sd.ctl("reset-failed", UNIT, check=False)


def test_stop_drains_a_running_job_and_ends_inactive_not_failed(running, redis_url, rdb):
    Client(redis_url).push("default", "testtasks:sleep_record", args=["drained", 1.5])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="job start")
    t0 = time.monotonic()
    running.ctl("stop", UNIT)
    assert time.monotonic() - t0 >= 1.0                 # it waited for the job
    assert rdb.lrange("test:runs", 0, -1) == ["drained"]
    assert running.prop(UNIT, "ActiveState") == "inactive" and running.prop(UNIT, "Result") == "success"


def test_journal_priorities_let_p_err_show_only_errors(running, redis_url, rdb):
    # This run of the unit only: the journal keeps earlier tests' runs (and their own errors).
    def errors():
        return running.run("journalctl", "--no-pager", "-o", "cat", "-p", "err",
                           f"_SYSTEMD_INVOCATION_ID={running.prop(UNIT, 'InvocationID')}", check=False).stdout
    Client(redis_url).push("default", "testtasks:fail", args=["kaboom"])
    wait_for(lambda: "kaboom" in errors(), 30, what="the failure in journalctl -p err")
    assert "started:" not in errors() and "job retried" not in errors()   # info and warning lines stay out


def test_an_invalid_config_fails_the_start_with_the_reason_in_status(sd, redis_url):
    write_config(sd, redis_url, extra="bogus: 1\n")
    try:
        assert sd.ctl("start", UNIT, check=False).returncode != 0
        assert sd.prop(UNIT, "ActiveState") == "failed" and sd.prop(UNIT, "ExecMainStatus") == "78"
        assert "invalid configuration" in sd.prop(UNIT, "StatusText")
        assert sd.prop(UNIT, "NRestarts") == "0"          # RestartPreventExitStatus=78: no restart loop
    finally:
        sd.ctl("reset-failed", UNIT, check=False)


def test_restarting_mpqueue_target_restarts_every_instance(sd, redis_url):
    sd.install("mpqueue.target", (REPO / "packaging/systemd/mpqueue.target").read_text())
    write_config(sd, redis_url)
    (sd.config_dir / "second.yaml").write_text((sd.config_dir / "svc.yaml").read_text())
    units = [UNIT, "mpqueue@second.service"]
    try:
        sd.ctl("start", "mpqueue.target", *units)
        before = {u: sd.prop(u, "MainPID") for u in units}
        sd.ctl("restart", "mpqueue.target")
        wait_for(lambda: all(sd.prop(u, "ActiveState") == "active" and sd.prop(u, "MainPID") != before[u]
                             for u in units), 30, what="both instances restarted")
    finally:
        sd.ctl("stop", "mpqueue.target", *units, check=False)
        shutil.rmtree("/var/lib/mpqueue/second", ignore_errors=True)
