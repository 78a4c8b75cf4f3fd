"""A throwaway, real systemd for tests: systemd runs as PID 1 of private PID,
mount, UTS and cgroup namespaces, sees only the units a test installs (plus
journald and the special targets), and is driven with the real `systemctl`
through nsenter. Only /run is private; the file system, network and users are
the machine's. Recipe: ../shared/systemd-harness/README.md."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SYSTEMD = "/lib/systemd/systemd"
SPECIAL_UNITS = """sysinit.target basic.target sockets.target timers.target paths.target slices.target
local-fs.target local-fs-pre.target swap.target network.target network-pre.target network-online.target
nss-lookup.target remote-fs.target multi-user.target time-sync.target shutdown.target umount.target
final.target exit.target systemd-exit.service""".split()
JOURNALD = ["systemd-journald.service", "systemd-journald.socket", "systemd-journald-dev-log.socket"]

INIT = """#!/bin/bash
# PID 1 of the new namespaces until it execs systemd: a private view of the system.
set -eu
D=$1
mount --make-rprivate /
mount -t proc -o nosuid,nodev,noexec proc /proc
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
umount -R /sys/fs/cgroup 2>/dev/null || umount -l /sys/fs/cgroup
mount -o remount,bind,ro /sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m tmpfs /run
mkdir -p /run/systemd/journald.conf.d /run/systemd/system.conf.d
printf '[Journal]\\nStorage=volatile\\nForwardToConsole=no\\nForwardToWall=no\\nForwardToKMsg=no\\nReadKMsg=no\\n' \\
    > /run/systemd/journald.conf.d/test.conf
# No core files from a watchdog SIGABRT on the shared file system.
printf '[Manager]\\nDefaultTimeoutStopSec=15s\\nDefaultLimitCORE=0\\n' > /run/systemd/system.conf.d/test.conf
mount --bind /dev/null /dev/console
# A booted host's / is shared (systemd makes it so): LoadCredential= builds a unit's
# credentials in a namespace of its own and moves them into /run/credentials,
# which reaches the manager's view only through shared propagation. Shared
# within this namespace only: it was made private from the machine's above.
mount --make-rshared /
: > "$D/manager.log"
mount --bind "$D/manager.log" /dev/kmsg
exec env -i container=mpqueue-tests LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    SYSTEMD_UNIT_PATH="$D/units" %s --system --log-target=journal-or-kmsg --show-status=no
"""


def unavailable() -> str | None:
    """Why this machine can't run the harness, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "nsenter", "setsid"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not os.path.exists(SYSTEMD):
        return "systemd not installed"
    if _cgroup2_root() is None:
        return "no cgroup2 hierarchy"
    return None


def _cgroup2_root() -> Path | None:
    for d in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if os.path.isdir(d) and subprocess.run(["stat", "-f", "-c", "%T", d], capture_output=True,
                                               text=True).stdout.strip() == "cgroup2fs":
            return Path(d)
    return None


class Systemd:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="mpq-systemd-"))
        self.units = self.dir / "units"
        self.cgroup = _cgroup2_root() / f"mpq-test-{self.dir.name}"
        self.pid = None
        self.unshare = None

    # -- lifecycle
    def start(self, timeout: float = 30.0) -> "Systemd":
        self._write_units()
        init = self.dir / "init.sh"
        init.write_text(INIT % SYSTEMD)
        init.chmod(0o755)
        self.cgroup.mkdir()
        # The shell joins the new cgroup before the cgroup namespace is made, then
        # becomes unshare; --kill-child takes the whole namespace down with it.
        self.unshare = subprocess.Popen(
            ["setsid", "bash", "-c", 'echo $$ > "$1/cgroup.procs" && exec unshare --pid --fork '
             '--kill-child=SIGKILL --mount --uts --cgroup --propagation private "$2/init.sh" "$2"',
             "harness", str(self.cgroup), str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=open(self.dir / "init.log", "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while self.pid is None and time.monotonic() < deadline:
            try:
                children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children").read_text().split()
                self.pid = int(children[0]) if children else None
            except FileNotFoundError:
                break
            time.sleep(0.02)  # ok: polling for the namespace's PID 1 to appear
        while time.monotonic() < deadline and self.pid:
            state = self.ctl("is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return self
            time.sleep(0.05)  # ok: polling the manager's boot state
        log = (self.dir / "init.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"systemd did not boot: {log[-2000:]}")

    def stop(self) -> None:
        if self.pid and Path(f"/proc/{self.pid}").exists():
            self.ctl("--no-block", "exit", check=False)
            deadline = time.monotonic() + 20
            while Path(f"/proc/{self.pid}/comm").exists() and time.monotonic() < deadline:
                time.sleep(0.05)  # ok: polling for the manager to exit
            if Path(f"/proc/{self.pid}").exists():
                os.kill(self.pid, signal.SIGKILL)
        if self.unshare is not None:
            try:
                self.unshare.wait(10)
            except subprocess.TimeoutExpired:
                self.unshare.kill()
                self.unshare.wait()
        if self.cgroup.exists():
            kill = self.cgroup / "cgroup.kill"
            if kill.exists():
                kill.write_text("1")
            for _ in range(50):
                # cgroup directories go deepest first, once their processes are gone
                for d in sorted((p for p in self.cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    try:
                        d.rmdir()
                    except OSError:
                        pass
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)  # ok: waiting for the kernel to empty the cgroup
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- driving it
    def run(self, *cmd, check=True, timeout=120) -> subprocess.CompletedProcess:
        full = ["nsenter", "-t", str(self.pid), "-m", "-u", "-p", "-C", "--", "env",
                f"SYSTEMD_UNIT_PATH={self.units}", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", *cmd]
        return subprocess.run(full, capture_output=True, text=True, check=check, timeout=timeout)

    def ctl(self, *args, check=True, timeout=120) -> subprocess.CompletedProcess:
        return self.run("systemctl", "--no-pager", *args, check=check, timeout=timeout)

    def prop(self, unit: str, name: str) -> str:
        return self.ctl("show", "-p", name, "--value", unit).stdout.strip()

    def install(self, name: str, text: str) -> None:
        path = self.units / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.ctl("daemon-reload")

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False).stdout

    def host_pid(self, ns_pid: int) -> int | None:
        """The machine's PID of a process that is `ns_pid` inside the instance."""
        for procs in self.cgroup.rglob("cgroup.procs"):
            for pid in procs.read_text().split():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except FileNotFoundError:
                    continue
                nspid = next((line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:")), None)
                if nspid == str(ns_pid):
                    return int(pid)
        return None

    def _write_units(self) -> None:
        self.units.mkdir(parents=True)
        (self.units / "default.target").write_text(
            "[Unit]\nDescription=test default\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n")
        for name in SPECIAL_UNITS + JOURNALD:       # copied without their .wants: they pull in nothing
            src = Path("/lib/systemd/system") / name
            if src.exists():
                shutil.copy(src, self.units / name)
        (self.units / "systemd-journald.service.d").mkdir()
        (self.units / "systemd-journald.service.d" / "test.conf").write_text(
            "[Service]\nSockets=\nSockets=systemd-journald.socket systemd-journald-dev-log.socket\n")
        for target, unit in (("sockets.target", "systemd-journald.socket"),
                             ("sockets.target", "systemd-journald-dev-log.socket"),
                             ("sysinit.target", "systemd-journald.service")):
            wants = self.units / f"{target}.wants"
            wants.mkdir(exist_ok=True)
            (wants / unit).symlink_to(f"../{unit}")
