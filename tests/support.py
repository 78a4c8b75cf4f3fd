"""Test support: a private redis-server, polling with deadlines, and a real
`mpqueue run` service driven as a subprocess."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml


def wait_for(predicate, timeout=10.0, interval=0.01, what="condition"):
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # ok: polling interval, not a wait for an event


async def until(predicate, timeout=10.0, what="condition"):
    """wait_for() on a running event loop: poll `predicate` between awaits until truthy,
    or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)      # ok: polling interval
    return value


def require_sphinx(why: str = "") -> None:
    """Skip without the docs extra (`pip install -e '.[docs]'`), except in CI (.ci/run
    installs it: there a missing Sphinx must fail, not pass as a skip)."""
    try:
        import myst_parser, sphinx, sphinx_click  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the docs extra is missing: {exc}")
        pytest.skip(f"the docs extra is not installed{why}: {exc}")


def sphinx(builder: str, src: Path, out: Path) -> subprocess.CompletedProcess:
    """Build docs `src` into `out` as packaging/debian/rules does: a warning fails it."""
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", builder, str(src), str(out)],
                          capture_output=True, text=True, timeout=300)


def push_tags(broker, queue, *tags, priority=0, delay=0.0, task="t:f") -> list[str]:
    """One job of `task` per tag (its one argument) pushed straight to the broker; their ids."""
    from mpqueue.brokers import PushItem
    from mpqueue.core import envelope as jobmod
    ids = []
    for tag in tags:
        job_id, env = jobmod.encode(task, [tag], priority=priority)
        broker.push(queue, [PushItem(env, priority, delay)])
        ids.append(job_id)
    return ids


BROKERS = ["redis", "sqlite"]


def broker_url_for(request) -> str:
    """The broker URL for a test parametrized over BROKERS: the session's Redis
    (a clean database) or an SQLite file in the test's own directory."""
    if request.param == "redis":
        return request.getfixturevalue("redis_url")
    return f"sqlite://{request.getfixturevalue('tmp_path')}/broker.db"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports: all bound at once while choosing, so the
    kernel can't hand the same one out twice (free_port() called n times can)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class RedisServer:
    """A redis-server of our own on a free port, persistence off."""

    def __init__(self, port: int | None = None, durable: bool = False, start: bool = True, unixsocket: bool = False):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self.dir = tempfile.mkdtemp(prefix="mpq-redis-")
        self.port = port or free_port()
        # durable: an append-only file synced on every write, so a restart keeps the data
        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
        self.socket = os.path.join(self.dir, "redis.sock") if unixsocket else None
        if self.socket:
            self.persistence += ["--unixsocket", self.socket, "--unixsocketperm", "700"]
        import redis
        # 127.0.0.1, not localhost: a minimal system has no /etc/hosts to resolve it
        self.client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        self.proc = None
        if start:
            self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *self.persistence,
             "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(self._ping, 10, what="redis-server to answer")
        except BaseException:
            self.halt()           # never leave a server behind, answering or not
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self):
        try:
            return self.client.ping()
        except Exception:
            return False

    def halt(self):
        """Stop the server, keeping its directory (and, if durable, its data)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self):
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


TASKS = '''
import ctypes, os, time
import mpqueue
import redis as _redis

_r = None
def r():
    global _r
    if _r is None:
        _r = _redis.Redis.from_url(os.environ["MPQ_TEST_REDIS"], decode_responses=True)
    return _r

@mpqueue.task(queue="default")
def noop():
    pass

@mpqueue.task(queue="default")
def record(tag):
    j = mpqueue.current_job()
    r().rpush("test:runs", f"{tag} {j.id} {j.attempt} {j.worker_index} {os.getpid()}")
    return tag

@mpqueue.task(queue="default")
def sleep_record(tag, seconds):
    r().rpush("test:starts", tag)
    time.sleep(seconds)
    r().rpush("test:runs", tag)

@mpqueue.task(queue="default")
def fail(msg="boom"):
    r().rpush("test:attempts", mpqueue.current_job().attempt)
    raise ValueError(msg)

@mpqueue.task(queue="default", retries=5, retry_delay=0.05)
def fail_then_ok(times):
    j = mpqueue.current_job()
    r().rpush("test:attempts", j.attempt)
    if j.attempt <= times:
        raise RuntimeError(f"attempt {j.attempt}")
    return j.attempt

@mpqueue.task(queue="default")
def ask_retry(delay):
    j = mpqueue.current_job()
    r().rpush("test:attempts", f"{j.attempt} {time.time()}")
    if j.attempt == 1:
        raise mpqueue.Retry(delay=delay)

@mpqueue.task(queue="default")
def exit_hard():
    r().rpush("test:attempts", mpqueue.current_job().attempt)
    os._exit(7)

@mpqueue.task(queue="default")
def segfault():
    r().rpush("test:attempts", mpqueue.current_job().attempt)
    ctypes.string_at(0)

@mpqueue.task(queue="default")
def leak(mb):
    global _hoard
    _hoard = bytearray(mb * 1024 * 1024)
    r().rpush("test:runs", os.getpid())

@mpqueue.task(queue="default", timeout=1)
def hang():
    r().rpush("test:attempts", mpqueue.current_job().attempt)
    time.sleep(3600)  # ok: a job that hangs until its timeout kills it

@mpqueue.task(queue="default")
def slow_first(tag):
    """Hangs on its first attempt (so its node can be killed under it), then records."""
    j = mpqueue.current_job()
    r().rpush("test:starts", f"{tag} {j.attempt} {os.getpid()}")
    if j.attempt == 1:
        time.sleep(60)  # ok: hangs so its node can be killed under it
    r().rpush("test:runs", tag)

@mpqueue.task(queue="default")
def pid():
    r().rpush("test:runs", os.getpid())

def on_failure(job, error):
    r().rpush("test:failures", f"{job['id']} {job['task']} {error['type']}")

def on_start(ctx):
    r().rpush("test:booted", f"{ctx['queue']} {ctx['worker_index']} {os.getpid()}")

def on_stop(ctx):
    r().rpush("test:stopped", f"service {ctx['queue']} {ctx['worker_index']} {os.getpid()}")

async def aon_stop(ctx):
    import asyncio
    await asyncio.sleep(0)
    r().rpush("test:stopped", f"queue {ctx['queue']} {ctx['worker_index']} {os.getpid()}")

def on_stop_fails(ctx):
    raise RuntimeError("stop hook broke")

# -- hooks and job context (tests/e2e/test_heritage.py)
import json as _json

def _record_hook(by, job, error):
    r().rpush("test:hooked", _json.dumps({"by": by, "job": job, "error": error, "pid": os.getpid()}))

def queue_hook(job, error):
    _record_hook("queue", job, error)

def task_hook(job, error):
    _record_hook("task", job, error)

def before(job):
    j = mpqueue.current_job()
    r().rpush("test:order", _json.dumps({"at": "before", "job": job, "pid": os.getpid(),
                                         "ctx_id": j.id if j else None}))

@mpqueue.task(queue="default", retries=3, retry_delay=0.05)
def step(fail_times):
    j = mpqueue.current_job()
    r().rpush("test:order", _json.dumps({"at": "run", "id": j.id, "attempt": j.attempt, "pid": os.getpid()}))
    if j.attempt <= fail_times:
        raise RuntimeError(f"attempt {j.attempt}")

@mpqueue.task(queue="default", retries=2, retry_delay=0.05)
def whoami(fail_times=0, seconds=0):
    j = mpqueue.current_job()
    r().rpush("test:whoami", _json.dumps({"id": j.id, "queue": j.queue, "task": j.task, "attempt": j.attempt,
                                          "max_attempts": j.max_attempts, "worker_index": j.worker_index,
                                          "pid": os.getpid()}))
    time.sleep(seconds)
    if j.attempt <= fail_times:
        raise RuntimeError(f"attempt {j.attempt}")
    return j.worker_index

class Report(mpqueue.Task):
    """Class-based: its own retry options and its own failure hook."""
    queue = "default"
    retries = 1
    retry_delay = 0.05

    def run(self, tag, fail=False):
        j = mpqueue.current_job()
        r().rpush("test:attempts", f"{tag} {j.attempt} {type(self).__name__}")
        if fail:
            raise ValueError(f"report {tag} failed")
        return f"report {tag}"

    def on_failure(self, job, error):
        _record_hook("class", job, error)

@mpqueue.task(queue="default", retries=1, retry_delay=0.05, on_failure=task_hook)
def fail_hooked(msg="boom"):
    r().rpush("test:attempts", mpqueue.current_job().attempt)
    raise ValueError(msg)

@mpqueue.task(queue="default", retries=1, retry_delay=0.05, on_failure="testtasks:task_hook")
def fail_hooked_by_name(msg="boom"):
    r().rpush("test:attempts", mpqueue.current_job().attempt)
    raise ValueError(msg)

@mpqueue.task(queue="default", timeout=0.5, on_failure=task_hook)
def hang_hooked():
    r().rpush("test:attempts", mpqueue.current_job().attempt)
    time.sleep(3600)  # ok: a job that hangs until its timeout kills it

@mpqueue.task(queue="default", retries=1, retry_delay=0, on_failure=task_hook)
def exit_hooked():
    r().rpush("test:attempts", mpqueue.current_job().attempt)
    os._exit(7)

@mpqueue.task(queue="default")
def hold(tag, seconds=20):
    """Runs until the test pushes to test:release:<tag> (or `seconds` pass)."""
    r().rpush("test:starts", f"{tag} {os.getpid()}")
    r().blpop(f"test:release:{tag}", seconds)
    return tag
'''


class Service:
    """A real `mpqueue run --config` in a subprocess, with a fake NOTIFY_SOCKET."""

    def __init__(self, tmp: Path, redis_url: str, config: dict | None = None, tasks: str = TASKS,
                 name: str = "svc", broker: str | None = None):
        self.tmp = Path(tmp)
        self.redis_url = redis_url      # where test tasks record what they did
        self.broker_url = broker or redis_url
        (self.tmp / "code").mkdir(parents=True, exist_ok=True)
        (self.tmp / "code" / "testtasks.py").write_text(textwrap.dedent(tasks))
        cfg = {"name": name, "broker": self.broker_url, "path": [str(self.tmp / "code")],
               "imports": ["testtasks"], "log": {"level": "info", "format": "text"},
               "shutdown_timeout": 10, "lease_grace": 2,
               "queues": {"default": {"workers": 2}}}
        for key, value in (config or {}).items():
            cfg[key] = value
        self.config_path = self.tmp / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.proc = None
        self.notify = None
        self.messages: list[str] = []

    def cpu_seconds(self) -> float:
        """utime+stime of the supervisor and its live workers."""
        total, tick = 0.0, os.sysconf("SC_CLK_TCK")
        for pid in [self.proc.pid, *self.worker_pids()]:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except FileNotFoundError:
                pass
        return total

    def start(self, wait_ready=True, extra_env=None, prefix=(), cwd=None):
        """`prefix`: a command to run `mpqueue run` under (e.g. ip netns exec NS). `cwd`:
        where it runs (`python -m` imports mpqueue from there first: another release's tree)."""
        sock_path = str(self.tmp / "notify.sock")
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        # A new process, a new message stream: a READY=1 of an earlier run must not
        # count as this one's.
        self.messages = []
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(sock_path)
        self.notify.settimeout(0.2)
        # systemd reads its socket all the time; so do we (the queue holds only ~10 datagrams)
        self._reader = threading.Thread(target=self._read_notify, args=(self.notify,), daemon=True)
        self._reader.start()
        env = dict(os.environ, NOTIFY_SOCKET=sock_path, MPQ_TEST_REDIS=self.redis_url,
                   MPQUEUE_RUNTIME_DIR=str(self.tmp / "run"), PYTHONUNBUFFERED="1")
        env.update(extra_env or {})
        self.log_path = self.tmp / "service.log"
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "mpqueue.ops.cli", "run", "--config",
                                      str(self.config_path)],
                                     env=env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=cwd)
        if wait_ready:
            self.wait_message("READY=1", 30)
        return self

    def _read_notify(self, sock):
        while True:
            try:
                self.messages.append(sock.recv(65536).decode())
            except socket.timeout:
                continue
            except OSError:
                return

    def read_messages(self) -> list[str]:
        return list(self.messages)

    def wait_message(self, needle: str, timeout=10.0) -> str:
        def seen():
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited ({self.proc.returncode}) waiting for {needle}:\n{self.log()}")
            return next((m for m in self.read_messages() if needle in m), None)
        return wait_for(seen, timeout, what=needle)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []

    def signal(self, signum):
        os.kill(self.proc.pid, signum)

    def stop(self, timeout=30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._kill_group()
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        return self.proc.returncode

    def _kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
