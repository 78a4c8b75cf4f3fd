"""An upgrade as an operator makes it: the previous release's package (v0.1.0,
built from this repository's history) runs a service whose broker holds waiting,
delayed, running and failed jobs and a schedule; the new package is installed
over it (its postinst restarts the instance); every job is still there and ends
exactly once. Then a purge while the instance runs leaves nothing behind."""
import json
import os
from pathlib import Path

import pytest

from tests.debian import acceptance as acc
from tests.support import RedisServer, wait_for

pytestmark = pytest.mark.deb

ORDERS = "mpqueue@orders.service"
WEB = "mpqueue-web@orders.service"


def push(host, task, *args, delay=None) -> str:
    extra = ["--delay", str(delay)] if delay else []
    return host.mpqctl("orders", "push", "default", f"shoptasks:{task}", "--args", json.dumps(list(args)),
                       *extra)["id"]


def state(host, job_id) -> str:
    return acc.job_state(host, "orders", job_id).get("state", "")


def ticks() -> list[str]:
    return [line for line in acc.runs("orders") if line.startswith("tick ")]


def test_an_upgrade_with_jobs_in_the_broker_loses_none_and_purge_leaves_nothing(packages):
    before = acc.installed_packages()
    user_before = acc.user_exists()
    host = redis = None
    try:
        # Given: the previous release installed and running a service on Redis
        acc.sh("apt-get", "install", "-y", "-q", str(packages["previous"]))
        previous = acc.package_version()
        acc.install_task_code()
        redis = RedisServer()
        acc.write_config("orders", {
            "broker": redis.url, "path": [str(acc.CODE_DIR)], "imports": ["shoptasks"],
            "shutdown_timeout": 20, "lease_grace": 2, "queues": {"default": {"workers": 1}},
            "schedules": {"beat": {"task": "shoptasks:tick", "every": 1}}})
        host = acc.Host(acc.scratch(), dropins=())          # the units exactly as installed
        host.ctl("start", ORDERS)
        old_main = host.prop(ORDERS, "MainPID")

        # and a broker holding every kind of job: failed, running, waiting behind it, delayed
        failed = [push(host, "fail", f"failed before the upgrade {i}") for i in range(2)]
        wait_for(lambda: all(state(host, j) == "failed" for j in failed), 30, interval=0.2, what="failed jobs")
        running = push(host, "run", "up-running", 6)
        wait_for(lambda: state(host, running) == "running", 30, interval=0.1, what="a running job")
        waiting = [push(host, "run", f"up-waiting-{i}", 0.1) for i in range(5)]
        delayed = [push(host, "run", f"up-delayed-{i}", 0, delay=8) for i in range(3)]
        assert {state(host, j) for j in waiting} == {"ready"}
        assert {state(host, j) for j in delayed} == {"scheduled"}
        wait_for(lambda: len(ticks()) >= 2, 20, interval=0.2, what="the schedule ticking")

        # When: the new package is installed over it (maintainer scripts talk to this systemd)
        host.run("dpkg", "-i", str(packages["new"]), timeout=600)
        upgraded_at = len(ticks())

        # Then: the instance was restarted onto the new release
        assert acc.package_version() != previous or packages["new"].name == packages["previous"].name
        assert host.prop(ORDERS, "ActiveState") == "active" and host.prop(ORDERS, "MainPID") != old_main
        assert "--pid $MAINPID" in Path("/lib/systemd/system/mpqueue@.service").read_text()
        # and every job ends exactly once
        acc.wait_done(host, "orders", [running, *waiting, *delayed], timeout=90)
        ran = acc.runs("orders")
        for tag in ["up-running"] + [f"up-waiting-{i}" for i in range(5)] + [f"up-delayed-{i}" for i in range(3)]:
            assert ran.count(tag) == 1, (tag, ran)
        # the failed jobs are still in the failed store, with their reason
        listed = {f["id"]: f for f in host.mpqctl("orders", "failed", "default")}
        assert set(failed) <= set(listed), listed
        for j in failed:
            assert "failed before the upgrade" in listed[j]["error"]["message"], listed[j]
        # the schedule goes on ticking, never twice for one tick
        wait_for(lambda: len(ticks()) >= upgraded_at + 2, 30, interval=0.2, what="ticks after the upgrade")
        assert len(set(ticks())) == len(ticks()), ticks()
        # and the upgraded unit reloads
        assert host.ctl("reload", ORDERS, check=False).returncode == 0, host.journal(ORDERS)[-2000:]

        # When: the package is purged while the instance and its dashboard run, with an
        # admin's file kept in /etc/mpqueue (installed -g mpqueue as docs/howto/systemd.md says)
        host.ctl("start", WEB)
        Path("/etc/mpqueue/orders.yaml").unlink()
        kept = Path("/etc/mpqueue/kept.yaml")
        acc.sh("install", "-m", "640", "-g", "mpqueue", "/dev/null", str(kept))
        host.run("apt-get", "purge", "-y", "-q", "mpqueue", timeout=600)
        # Then: the admin's file is kept, with its mode and a group that can't be reused
        st = kept.stat()
        assert (st.st_gid, st.st_mode & 0o777) == (0 if not user_before else st.st_gid, 0o640)
        kept.unlink()
        Path("/etc/mpqueue").rmdir()
        # and everything the package made is gone, its units stopped
        assert host.prop(ORDERS, "ActiveState") in ("inactive", "failed")
        assert host.prop(WEB, "ActiveState") in ("inactive", "failed")
        assert acc.mpqueue_processes() == []
        assert acc.package_state() in ("", "not-installed")
        assert acc.user_exists() == user_before
        for path in ("/usr/bin/mpqueue", "/usr/bin/mpqctl", "/var/lib/mpqueue", "/etc/mpqueue",
                     "/lib/systemd/system/mpqueue@.service", "/lib/systemd/system/mpqueue-web@.service",
                     "/lib/systemd/system/mpqueue.target", "/usr/lib/sysusers.d/mpqueue.conf"):
            assert not os.path.lexists(path), path
    finally:
        if host is not None:
            host.stop()
        if redis is not None:
            redis.stop()
        acc.clean_machine(before)
