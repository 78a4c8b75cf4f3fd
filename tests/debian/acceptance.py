"""What the acceptance suite does to a machine, as an operator would: build the
package, install it with apt, give a throwaway systemd the installed units
unchanged (linked, so an upgrade's new unit files are what it runs), put task
code and configs where the hardening lets the service read them, and run the
installed commands as root or as another user, inside that systemd's view of
the host (its /run, so /run/mpqueue and /run/credentials are the ones the
units see). Everything it adds to the machine it removes again."""
from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.debian.dropins import DROPINS
from tests.support import RedisServer, wait_for
from tests.systemd.harness import Systemd

REPO = Path(__file__).resolve().parents[2]
UNITS = ("mpqueue@.service", "mpqueue-web@.service", "mpqueue.target")
# The release an upgrade starts from (git tag v0.1.0).
PREVIOUS_RELEASE = "70d000a6d70958b1511d34482945493707edefa0"
# Debian's tools and interpreter only: no pyenv, no virtualenv, no PYTHONPATH.
DEBIAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
CODE_DIR = Path("/usr/local/lib/mpqueue-acceptance")
OPERATOR, OUTSIDER = "mpqacc-op", "mpqacc-out"       # a user in group mpqueue, and one outside it

TASKS = '''"""The acceptance suite's task code, installed where an operator's would be."""
import os
import time

import mpqueue


def _record(line):
    # One line per run in the instance's state directory: how often each job ran.
    with open(os.path.join(os.environ["STATE_DIRECTORY"], "runs.log"), "a") as f:
        f.write(line + "\\n")


@mpqueue.task(queue="default")
def add(x, y):
    return x + y


@mpqueue.task(queue="default")
def run(tag, seconds=0.0):
    time.sleep(seconds)
    _record(tag)
    return tag


@mpqueue.task(queue="default")
def held_until_killed(tag):
    # Its first attempt outlasts any watchdog (the worker is killed meanwhile); a later one
    # runs at once. A fixed run time would race the watchdog's kill.
    if mpqueue.current_job().attempt == 1:
        time.sleep(600)     # ok: a job that holds its worker until the test kills it
    _record(tag)
    return tag


@mpqueue.task(queue="default", retries=0)
def fail(message):
    raise RuntimeError(message)


@mpqueue.task(queue="default")
def tick():
    _record(f"tick {mpqueue.current_job().scheduled_for.timestamp():.0f}")
'''


def sh(*cmd, check=True, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=DEBIAN_ENV, cwd="/", capture_output=True, text=True, check=check, timeout=timeout)


def package_state() -> str:
    return sh("dpkg-query", "-W", "-f", "${db:Status-Status}", "mpqueue", check=False).stdout.strip()


def package_version() -> str:
    return sh("dpkg-query", "-W", "-f", "${Version}", "mpqueue", check=False).stdout.strip()


def installed_packages() -> set[str]:
    return set(sh("dpkg-query", "-W", "-f", "${db:Status-Status} ${Package}\n").stdout.split("\n"))


def build(source: Path, out: Path) -> Path:
    """The .deb that `source`'s own packaging/debian/build.sh makes."""
    result = subprocess.run([str(source / "packaging/debian/build.sh"), str(out)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return next(out.glob("mpqueue_*_all.deb"))


def previous_release_source(into: Path) -> Path:
    """The previous release's tree, from this repository's history (no network)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", PREVIOUS_RELEASE], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def mpqueue_processes() -> list[str]:
    """Command lines of the packaged mpqueue's processes on the machine."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "/usr/bin/mpqueue" in cmd or cmd.startswith(tuple(f"mpqueue {n}:" for n in ("orders", "mail", "frozen"))):
            found.append(f"{proc.name}: {cmd}")
    return found


class PasswordRedis(RedisServer):
    """The test's own redis-server, with a password as a production one has."""
    PASSWORD = "acceptance/s3cret:pw"

    def __init__(self):
        super().__init__(start=False)
        self.persistence += ["--requirepass", self.PASSWORD]
        import redis
        self.client = redis.Redis(host="127.0.0.1", port=self.port, password=self.PASSWORD, decode_responses=True)
        self.start()


class Host:
    """The machine as an operator sees it, with a throwaway systemd as its PID 1."""

    def __init__(self, tmp: Path, dropins=tuple(DROPINS)):
        self.tmp = tmp
        self.sd = Systemd().start()
        for name in UNITS:
            (self.sd.units / name).symlink_to(Path("/lib/systemd/system") / name)
        for name in dropins:
            text, _reason = DROPINS[name]
            path = self.sd.units / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.sd.ctl("daemon-reload")
        self._allow_service_actions()

    def stop(self) -> None:
        self.sd.stop()

    # -- driving it
    def run(self, *cmd, user: str | None = None, env: dict | None = None, check=True, timeout=120):
        """cmd on the host, as root or as `user` (with that user's groups), Debian's environment."""
        as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"] if user else []
        full = [f"{k}={v}" for k, v in {**DEBIAN_ENV, **(env or {})}.items()]
        result = self.sd.run(*as_user, "env", "-i", *full, *cmd, check=False, timeout=timeout)
        assert not check or result.returncode == 0, (cmd, user, result.returncode, result.stdout[-2000:],
                                                     result.stderr[-2000:])
        return result

    def ctl(self, *args, check=True, timeout=120):
        return self.sd.ctl(*args, check=check, timeout=timeout)

    def prop(self, unit: str, name: str) -> str:
        return self.sd.prop(unit, name)

    def journal(self, unit: str) -> str:
        return self.sd.journal(unit)

    def journal_entries(self, unit: str) -> list[dict]:
        out = self.sd.run("journalctl", "--no-pager", "-o", "json", "-u", unit, check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def mpqctl(self, name: str, *args, user: str | None = None, env: dict | None = None, check=True):
        """`mpqctl -s NAME --json ARGS` as an operator runs it; its JSON answer."""
        result = self.run("/usr/bin/mpqctl", "-s", name, "--json", *args, user=user, env=env, check=False)
        if check:
            assert result.returncode == 0, (args, user, result.stderr)
            return json.loads(result.stdout) if result.stdout.strip() else None
        return result

    def main_pid(self, unit: str) -> int:
        """The unit's main process, as a pid of the machine."""
        return self.sd.host_pid(int(self.prop(unit, "MainPID")))

    def unit_pids(self, unit: str) -> set[int]:
        procs = self.sd.cgroup / self.prop(unit, "ControlGroup").lstrip("/") / "cgroup.procs"
        return {int(p) for p in procs.read_text().split()} if procs.exists() else set()

    def workers(self, unit: str) -> set[int]:
        return self.unit_pids(unit) - {self.main_pid(unit)}

    def _allow_service_actions(self) -> None:
        """A Docker image's /usr/sbin/policy-rc.d forbids every service action; a real
        Debian host has none. Inside the throwaway systemd's mount namespace only, an
        allowing one takes its place, so the maintainer scripts' restart and stop run."""
        if Path("/usr/sbin/policy-rc.d").exists():
            allow = self.tmp / "policy-rc.d"
            allow.write_text("#!/bin/sh\nexit 0\n")
            allow.chmod(0o755)
            self.sd.run("mount", "--bind", str(allow), "/usr/sbin/policy-rc.d")


# -- what an operator puts on the machine
def install_task_code() -> None:
    CODE_DIR.mkdir(parents=True, exist_ok=True)
    (CODE_DIR / "shoptasks.py").write_text(TASKS)
    (CODE_DIR / "shoptasks.py").chmod(0o644)


def write_config(name: str, cfg: dict) -> Path:
    """/etc/mpqueue/NAME.yaml, root:mpqueue 0640, as docs/howto/systemd.md installs it."""
    import yaml
    path = Path(f"/etc/mpqueue/{name}.yaml")
    path.write_text(yaml.safe_dump({"name": name, **cfg}, sort_keys=False))
    os.chown(path, 0, grp.getgrnam("mpqueue").gr_gid)
    path.chmod(0o640)
    return path


def write_secret(path: Path, value: str) -> None:
    """A secret file under /etc/mpqueue readable by root and group mpqueue only, as
    are the directories between: the unit's LoadCredential= and an operator's
    MPQUEUE_CREDENTIALS_DIR read the same file."""
    gid = grp.getgrnam("mpqueue").gr_gid
    path.parent.mkdir(parents=True, exist_ok=True)
    d = path.parent
    while d != Path("/etc/mpqueue"):
        os.chown(d, 0, gid)
        d.chmod(0o750)
        d = d.parent
    path.write_text(value + "\n")
    os.chown(path, 0, gid)
    path.chmod(0o640)


def add_users() -> None:
    sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", "mpqueue", OPERATOR)
    sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OUTSIDER)


def remove_users() -> None:
    for user in (OPERATOR, OUTSIDER):
        if sh("getent", "passwd", user, check=False).returncode == 0:
            sh("userdel", user, check=False)


def runs(name: str) -> list[str]:
    """Lines the task code wrote, one per run, for instance NAME."""
    path = Path(f"/var/lib/mpqueue/{name}/runs.log")
    return path.read_text().splitlines() if path.exists() else []


def job_state(host: Host, name: str, job_id: str) -> dict:
    result = host.mpqctl(name, "job", job_id, check=False)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else {}


def wait_done(host: Host, name: str, ids, timeout=60.0) -> None:
    for job_id in ids:
        wait_for(lambda: job_state(host, name, job_id).get("state") == "done", timeout, interval=0.2,
                 what=f"job {job_id} of {name} done")


def clean_machine(before: set[str]) -> None:
    """Purge the package and whatever the suite or apt added for it."""
    remove_users()
    for path in Path("/etc/mpqueue").glob("*") if Path("/etc/mpqueue").exists() else ():
        if path.name != "example.yaml":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if package_state() not in ("", "not-installed"):
        sh("apt-get", "purge", "-y", "-q", "mpqueue", check=False)
    extra = sorted(p.split()[1] for p in installed_packages() - before
                   if p.startswith("installed ") and p.split()[1] != "mpqueue")
    if extra:
        sh("apt-get", "purge", "-y", "-q", *extra, check=False)
    for path in (CODE_DIR, Path("/var/log/mpqueue")):
        shutil.rmtree(path, ignore_errors=True)


def user_exists(name="mpqueue") -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="mpq-acceptance-"))
