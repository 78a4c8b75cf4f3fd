"""The Debian 12 package, for real: build it from the working tree, install it on
this machine, run the installed unit under a throwaway systemd with Debian's own
python3 and libraries, upgrade it, purge it, and check nothing is left behind.

It changes /usr, /etc and /var/lib of the machine (and purges in a `finally`), so
it runs only with MPQUEUE_DEB_TEST=1, as root, where the systemd harness works.
The dashboard's unit, mpqueue-web@, runs beside the service and serves its page."""
import grp
import json
import os
import shutil
import pwd
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support import RedisServer, free_port, wait_for
from tests.systemd.harness import Systemd, unavailable

REPO = Path(__file__).resolve().parents[2]
UNIT = "mpqueue@debtest.service"
WEB_UNIT = "mpqueue-web@debtest.service"
CONFIG = Path("/etc/mpqueue/debtest.yaml")
# Debian's tools and interpreter only: no pyenv, no virtualenv, no PYTHONPATH.
DEBIAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}

pytestmark = [
    pytest.mark.deb,
    pytest.mark.skipif(os.environ.get("MPQUEUE_DEB_TEST") != "1",
                       reason="installs and purges a package on this machine: set MPQUEUE_DEB_TEST=1"),
    pytest.mark.skipif(unavailable() is not None, reason=f"no throwaway systemd: {unavailable()}"),
]


def sh(*cmd, check=True, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=DEBIAN_ENV, cwd="/", capture_output=True, text=True, check=check, timeout=timeout)


def in_systemd(sd, *cmd, check=True) -> subprocess.CompletedProcess:
    """Run cmd inside the throwaway systemd's namespaces, so maintainer scripts talk to it."""
    env = [f"{k}={v}" for k, v in DEBIAN_ENV.items()]
    return sd.run("env", "-i", *env, *cmd, check=check, timeout=600)


def package_state() -> str:
    return sh("dpkg-query", "-W", "-f", "${db:Status-Status}", "mpqueue", check=False).stdout.strip()


def installed_packages() -> set[str]:
    return set(sh("dpkg-query", "-W", "-f", "${db:Status-Status} ${Package}\n").stdout.split("\n"))


def user_exists(name="mpqueue") -> bool:
    return sh("getent", "passwd", name, check=False).returncode == 0


def mpqueue_processes() -> list[str]:
    """Command lines of the packaged mpqueue's processes on the machine (supervisor or worker)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # the installed program, or the process titles of this test's instances (not
        # the titles of any other mpqueue service that may run on this machine)
        if "/usr/bin/mpqueue" in cmd or cmd.startswith(("mpqueue debtest:", "mpqueue orders:", "mpqueue example:")):
            found.append(f"{proc.name}: {cmd}")
    return found


def push(*args) -> str:
    out = sh("/usr/bin/mpqctl", "--config", str(CONFIG), "--json", "push", "default",
             "mpqueue.examples.tasks:add", "--args", json.dumps(list(args))).stdout
    return json.loads(out)["id"]


def job_done(job_id, result) -> bool:
    out = sh("/usr/bin/mpqctl", "--config", str(CONFIG), "job", job_id, "--json", check=False).stdout
    job = json.loads(out) if out.strip() else {}
    return job.get("state") == "done" and job.get("result") == result


def write_config(broker_url: str, web_port: int) -> None:
    # The shipped example, pointed at the test's own redis-server; its dashboard on a free port.
    cfg = yaml.safe_load(Path("/etc/mpqueue/example.yaml").read_text())
    cfg.update(name="debtest", broker=broker_url, shutdown_timeout=5)
    cfg["web"]["listen"] = f"127.0.0.1:{web_port}"
    CONFIG.write_text(yaml.safe_dump(cfg))
    os.chown(CONFIG, 0, grp.getgrnam("mpqueue").gr_gid)
    CONFIG.chmod(0o640)


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except OSError as exc:
        return getattr(exc, "code", None) or 0, ""


def allow_service_actions(sd, tmp_path) -> None:
    """A Docker image's /usr/sbin/policy-rc.d forbids every service action; a real
    Debian host has none. Inside the throwaway systemd's mount namespace only, an
    allowing one takes its place, so the maintainer scripts' stop and restart run."""
    if Path("/usr/sbin/policy-rc.d").exists():
        allow = tmp_path / "policy-rc.d"
        allow.write_text("#!/bin/sh\nexit 0\n")
        allow.chmod(0o755)
        sd.run("mount", "--bind", str(allow), "/usr/sbin/policy-rc.d")


def purge_leftovers(new_packages: set[str]) -> None:
    CONFIG.unlink(missing_ok=True)
    Path("/etc/mpqueue/orders.yaml").unlink(missing_ok=True)
    if package_state() not in ("", "not-installed"):
        sh("apt-get", "purge", "-y", "-q", "mpqueue", check=False)
    # What apt-get pulled in for this test only (python3-redis, python3-flask, ...).
    extra = sorted(p.split()[1] for p in new_packages if p.startswith("installed ") and p.split()[1] != "mpqueue")
    if extra:
        sh("apt-get", "purge", "-y", "-q", *extra, check=False)


def test_the_deb_installs_runs_under_systemd_upgrades_and_purges_clean(tmp_path):
    if package_state() not in ("", "not-installed"):
        pytest.skip("mpqueue is already installed on this machine; this test would remove it")
    user_before = user_exists()

    # Given: the package built from the working tree with the one documented command
    build = subprocess.run([str(REPO / "packaging/debian/build.sh"), str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    deb = next((tmp_path / "out").glob("mpqueue_0.1.0-1_all.deb"))

    before = installed_packages()
    sd = redis = None
    try:
        # When: it is installed as a user would (docs/packaging.md), dependencies and
        # recommendations (Flask for the dashboard) from Debian's archive
        sh("apt-get", "install", "-y", "-q", str(deb))
        assert package_state() == "installed"

        # Then: Debian's interpreter and libraries run it; the user and the files are there
        assert Path("/usr/bin/mpqueue").read_text().startswith("#!/usr/bin/python3\n")
        where = sh("/usr/bin/python3", "-c", "import mpqueue, redis, click; "
                   "print(mpqueue.__file__, redis.__file__, click.__file__)").stdout.split()
        assert all(p.startswith("/usr/lib/python3/dist-packages/") for p in where), where
        # and Debian's Flask, a Recommends
        flask = sh("/usr/bin/python3", "-c", "import flask; print(flask.__file__)").stdout
        assert flask.startswith("/usr/lib/python3/dist-packages/"), flask
        assert user_exists() and Path("/usr/lib/sysusers.d/mpqueue.conf").exists()
        etc = os.stat("/etc/mpqueue")
        assert (etc.st_mode & 0o777, grp.getgrgid(etc.st_gid).gr_name) == (0o750, "mpqueue")
        assert Path("/lib/systemd/system/mpqueue-web@.service").exists()
        for page in ("mpqueue.1.gz", "mpqctl.1.gz"):
            assert Path("/usr/share/man/man1", page).exists()
        assert sh("/usr/bin/mpqueue", "check", "--config", "/etc/mpqueue/example.yaml").returncode == 0
        # and installing enabled and started nothing: no unit links, no process
        links = [str(p) for p in Path("/etc/systemd/system").rglob("mpqueue*")]
        assert links == [] and mpqueue_processes() == [], links

        # When: an instance of the installed unit runs under systemd, as the mpqueue user
        redis = RedisServer()
        web_port = free_port()
        write_config(redis.url, web_port)
        sd = Systemd().start()
        sd.install("mpqueue@.service", Path("/lib/systemd/system/mpqueue@.service").read_text())
        sd.install("mpqueue.target", Path("/lib/systemd/system/mpqueue.target").read_text())
        sd.install("mpqueue-web@.service", Path("/lib/systemd/system/mpqueue-web@.service").read_text())
        sd.ctl("start", UNIT)
        assert sd.prop(UNIT, "ActiveState") == "active"
        main = sd.host_pid(int(sd.prop(UNIT, "MainPID")))
        assert os.stat(f"/proc/{main}").st_uid == pwd.getpwnam("mpqueue").pw_uid

        # Then: jobs pushed with the installed mpqctl are done
        ids = [push(i, 10) for i in range(3)]
        for i, job_id in enumerate(ids):
            wait_for(lambda: job_done(job_id, i + 10), 20, interval=0.2, what=f"job {job_id} done")

        # When: the installed dashboard unit of the same instance starts (Type=notify: ready once it listens)
        sd.ctl("start", WEB_UNIT)
        assert sd.prop(WEB_UNIT, "ActiveState") == "active", sd.journal(WEB_UNIT)
        web_pid = sd.host_pid(int(sd.prop(WEB_UNIT, "MainPID")))
        assert os.stat(f"/proc/{web_pid}").st_uid == pwd.getpwnam("mpqueue").pw_uid
        # Then: its page, its script (package data) and its data come from the installed package
        web = f"http://127.0.0.1:{web_port}"
        status, page = fetch(web + "/")
        assert status == 200 and "debtest" in page and "/static/dashboard.js" in page, (status, page[:500])
        assert fetch(web + "/static/dashboard.js")[0] == 200
        state = json.loads(fetch(web + "/api/state")[1])
        counts = {q["name"]: q["counts"] for q in state["queues"]}
        assert counts["default"]["done_total"] == 3 and [n["service"] for n in state["nodes"]["nodes"]] == ["debtest"]

        # When: the shipped example is copied unchanged, as the README says: its broker is
        # SQLite in the instance's state directory, no Redis involved
        shutil.copy("/etc/mpqueue/example.yaml", "/etc/mpqueue/orders.yaml")
        sd.ctl("start", "mpqueue@orders.service")
        assert sd.prop("mpqueue@orders.service", "ActiveState") == "active"
        # Then: a job pushed with `mpqctl -s orders` is done, in /var/lib/mpqueue/orders/queue.db
        out = sh("/usr/bin/mpqctl", "-s", "orders", "--json", "push", "default", "mpqueue.examples.tasks:add",
                 "--args", "[2, 3]").stdout
        sqlite_job = json.loads(out)["id"]
        wait_for(lambda: json.loads(sh("/usr/bin/mpqctl", "-s", "orders", "job", sqlite_job, "--json").stdout)
                 .get("result") == 5, 20, interval=0.2, what="a job on the SQLite broker done")
        assert Path("/var/lib/mpqueue/orders/queue.db").exists()
        sd.ctl("stop", "mpqueue@orders.service")
        Path("/etc/mpqueue/orders.yaml").unlink()

        # When: the package is upgraded (reinstalled) while the instance runs
        allow_service_actions(sd, tmp_path)
        old_pid, old_web_pid = sd.prop(UNIT, "MainPID"), sd.prop(WEB_UNIT, "MainPID")
        in_systemd(sd, "dpkg", "-i", str(deb))
        # Then: the running instance and its dashboard were restarted onto the new files, and serve
        assert sd.prop(UNIT, "ActiveState") == "active" and sd.prop(UNIT, "MainPID") != old_pid
        assert sd.prop(WEB_UNIT, "ActiveState") == "active" and sd.prop(WEB_UNIT, "MainPID") != old_web_pid
        assert fetch(f"http://127.0.0.1:{web_port}/api/state")[0] == 200
        job_id = push(20, 22)
        wait_for(lambda: job_done(job_id, 42), 20, interval=0.2, what="a job after the upgrade")

        # When: the package is purged while the instance runs, with an admin's file kept
        # in /etc/mpqueue, installed -g mpqueue as the README says
        CONFIG.unlink()
        kept = Path("/etc/mpqueue/kept.yaml")
        sh("install", "-m", "640", "-g", "mpqueue", "/dev/null", str(kept))
        in_systemd(sd, "apt-get", "purge", "-y", "-q", "mpqueue")
        # Then: it is kept, owned by group root with its mode (no bare gid a later group could get)
        st = kept.stat()
        assert (st.st_gid, st.st_mode & 0o777) == (0 if not user_before else st.st_gid, 0o640)
        kept.unlink()
        Path("/etc/mpqueue").rmdir()
        # Then: the instance and its dashboard were stopped and everything the package made is gone
        assert sd.prop(UNIT, "ActiveState") in ("inactive", "failed")
        assert sd.prop(WEB_UNIT, "ActiveState") in ("inactive", "failed")
        assert mpqueue_processes() == []
        assert package_state() in ("", "not-installed")
        assert user_exists() == user_before
        for path in ("/usr/bin/mpqueue", "/usr/bin/mpqctl", "/var/lib/mpqueue", "/etc/mpqueue",
                     "/lib/systemd/system/mpqueue@.service", "/lib/systemd/system/mpqueue-web@.service",
                     "/usr/lib/sysusers.d/mpqueue.conf"):
            assert not Path(path).exists(), path
    finally:
        if sd is not None:
            sd.stop()
        if redis is not None:
            redis.stop()
        purge_leftovers(installed_packages() - before)
