"""The conventions an operator expects, end to end with real processes: one error
style for both CLIs, exit statuses systemd names sensibly, passwords hidden
wherever a URL is shown, one environment for producers and mpqctl, a health
probe, and a memory_limit that cannot recycle a worker after every job."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mpqueue import Client
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def run(module, *args, env=None, cwd=ROOT):
    """`python -m mpqueue.ops.<module> args...` with a clean mpqueue environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MPQUEUE_", "NOTIFY_SOCKET"))}
    return subprocess.run([sys.executable, "-m", f"mpqueue.ops.{module}", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60, env={**base, **(env or {})})


def one_line(result, prog, code):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), result.stderr
    return lines[0]


def config(tmp_path, broker, name="svc", mode=0o600, extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nbroker: '{broker}'\nimports: [mpqueue.examples.tasks]\n"
                    f"queues: {{default: {{workers: 1}}}}\n{extra}")
    path.chmod(mode)
    return path


# -- one error style: `PROG: what is wrong`, one line, for both tools
def test_mpqueue_reload_of_a_service_that_is_not_running_is_one_line(tmp_path):
    result = run("cli", "reload", "nosuchservice", env={"MPQUEUE_RUNTIME_DIR": str(tmp_path)})
    line = one_line(result, "mpqueue", 1)
    assert line == f"mpqueue: service 'nosuchservice' is not running (no process holds its lock {tmp_path}/nosuchservice.lock)"


def test_mpqueue_usage_errors_are_one_line_with_status_2():
    line = one_line(run("cli", "run"), "mpqueue", 2)
    assert line == "mpqueue: give a service NAME or --config FILE (one of them)"
    assert one_line(run("cli", "frobnicate"), "mpqueue", 2).startswith("mpqueue: No such command")


def test_a_bad_config_is_one_line_with_status_78_from_both_tools(tmp_path):
    bad = config(tmp_path, "redis://127.0.0.1:1/0", extra="shutdown_timeout: -1\n")
    assert "shutdown_timeout" in one_line(run("cli", "check", "--config", str(bad)), "mpqueue", 78)
    assert "shutdown_timeout" in one_line(run("ctl", "--config", str(bad), "status"), "mpqctl", 78)


# -- passwords never shown
@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:1/0", "redis://127.0.0.1:1/0?password=hunter2"])
def test_mpqueue_check_never_prints_the_password(tmp_path, url):
    result = run("cli", "check", "--config", str(config(tmp_path, url)))
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and "***" in result.stdout


def test_a_config_error_naming_a_password_url_hides_it_in_the_message_and_in_status(tmp_path):
    # Given a broker URL with a password and a bad port, under a fake systemd notify socket
    bad = config(tmp_path, "redis://:hunter2@127.0.0.1:notaport/0")
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(5)
        # When the service is started with it
        result = run("cli", "run", "--config", str(bad), env={"NOTIFY_SOCKET": sock_path})
        status = sock.recv(65536).decode()
    # Then neither the error nor STATUS= (readable by anyone with systemctl status) holds it
    line = one_line(result, "mpqueue", 78)
    assert "hunter2" not in line and "***" in line
    assert "STATUS=invalid configuration" in status and "hunter2" not in status and "ERRNO=22" in status


def test_mpqctl_hides_a_query_string_password_in_broker_errors():
    result = run("ctl", "--broker", "redis://127.0.0.1:1/0?password=hunter2", "status")
    line = one_line(result, "mpqctl", 1)
    assert "hunter2" not in line and "password=***" in line


# -- one environment: MPQUEUE_CONFIG and MPQUEUE_BROKER, for producers and mpqctl alike
def test_mpqctl_uses_mpqueue_config_as_task_push_does(tmp_path, redis_url):
    cfg = config(tmp_path, redis_url)
    pushed = run("ctl", "push", "default", "mpqueue.examples.tasks:add", "--args", "[1, 2]",
                 env={"MPQUEUE_CONFIG": str(cfg)})
    assert pushed.returncode == 0, pushed.stderr
    status = run("ctl", "status", "--json", env={"MPQUEUE_CONFIG": str(cfg)})
    assert json.loads(status.stdout)["queues"] == {"default": {"ready": 1, "scheduled": 0, "running": 0,
                                                               "failed": 0, "done_total": 0, "failed_total": 0,
                                                               "throttled_total": 0, "paused": False,
                                                               "served": False}}


def test_mpqueue_broker_wins_over_mpqueue_config_for_both(tmp_path, redis_url, rdb):
    # Given a config naming database 0 and MPQUEUE_BROKER naming database 5
    cfg = config(tmp_path, redis_url)
    other = redis_url.rsplit("/", 1)[0] + "/5"
    env = {"MPQUEUE_CONFIG": str(cfg), "MPQUEUE_BROKER": other}
    assert run("ctl", "push", "default", "mpqueue.examples.tasks:add", env=env).returncode == 0
    code = ("import mpqueue.examples.tasks as t; t.add.push(1, 2); "
            "from mpqueue.producer.default import default_client; print(default_client().url)")
    producer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={**os.environ, **env})
    # Then both pushed to database 5
    assert producer.stdout.strip() == other, producer.stderr
    assert Client(other).broker.counts("default")["ready"] == 2
    assert Client(redis_url).broker.counts("default")["ready"] == 0


# -- a health probe
def test_mpqctl_ping_fails_without_a_live_node_and_passes_with_one(tmp_path, service, redis_url):
    svc = service(name="probe")
    down = run("ctl", "--config", str(svc.config_path), "ping")
    assert "no live node of service probe" in one_line(down, "mpqctl", 1)
    svc.start()
    up = wait_for(lambda: (r := run("ctl", "--config", str(svc.config_path), "ping", "--json")).returncode == 0
                  and r, 20, what="a live node")
    assert json.loads(up.stdout) == {"broker": "ok", "service": "probe", "nodes": 1}
    other = run("ctl", "--broker", redis_url, "ping")
    assert other.returncode == 0 and other.stdout.startswith("ok: broker answers; 1 live node")


def test_mpqctl_ping_fails_when_the_broker_is_unreachable():
    line = one_line(run("ctl", "--broker", "redis://127.0.0.1:1/0", "ping"), "mpqctl", 1)
    assert line.startswith("mpqctl: broker redis://127.0.0.1:1/0:")


# -- memory_limit
def test_a_memory_limit_below_the_boot_size_is_ignored_not_a_recycle_after_every_job(service, broker_url, rdb):
    svc = service({"queues": {"default": {"workers": 1, "memory_limit": 1}}}).start()
    client = Client(broker_url)
    for _ in range(3):
        client.push("default", "testtasks:pid")
    wait_for(lambda: rdb.llen("test:runs") == 3, 20, what="3 runs")
    assert len(set(rdb.lrange("test:runs", 0, -1))) == 1          # one worker ran them all
    assert "memory_limit 1 MB is below this worker's size after boot" in svc.log()


def test_memory_limit_is_off_by_default(tmp_path):
    from mpqueue.core.config import load_config
    assert load_config(config(tmp_path, "redis://127.0.0.1:1/0")).queues["default"].memory_limit == 0


# -- hostile mpqctl push arguments: one line, never a traceback
@pytest.mark.parametrize("args, code, why", [
    (['--args', '["\\ud800"]'], 1, "not valid UTF-8"),
    (['--args', "[" * 5000 + "]" * 5000], 2, "nested too deep"),
    (['--args', "[" * 200 + "]" * 200], 1, "nested more than 100 levels"),
    (['--delay', 'inf'], 2, "expected a finite number of seconds"),
    (['--delay', '1e12'], 1, "delay: expected a finite number of seconds from 0 to"),
    (['--eta', '0001-01-01T00:00:00'], 2, "outside the times this host can convert"),
    (['--eta', '9999-12-31T23:59:59'], 1, "eta: 9999-12-31T23:59:59"),
])
def test_mpqctl_push_refuses_hostile_arguments_in_one_line(redis_url, args, code, why):
    result = run("ctl", "--broker", redis_url, "push", "default", "mpqueue.examples.tasks:add", *args)
    assert why in one_line(result, "mpqctl", code)


# -- every broker URL `mpqueue check` accepts works
def test_a_unix_socket_broker_url_works_for_mpqctl_and_the_service(tmp_path, service, rdb):
    from tests.support import RedisServer
    server = RedisServer(unixsocket=True)
    try:
        url = f"unix://{server.socket}?db=0"
        assert run("cli", "check", "--config", str(config(tmp_path, url))).returncode == 0
        pushed = run("ctl", "--broker", url, "push", "default", "testtasks:record", "--args", '["via-unix"]')
        assert pushed.returncode == 0, pushed.stderr
        service(broker=url).start()
        wait_for(lambda: rdb.llen("test:runs") == 1, 20, what="the job pushed over the Unix socket")
        status = json.loads(run("ctl", "--broker", url, "status", "--json").stdout)
        assert status["queues"]["default"]["done_total"] == 1
    finally:
        server.stop()


# -- odd arguments to the other commands: one line, never a traceback
@pytest.mark.parametrize("args, code, why", [
    (["ping", "--max-age", "nan"], 2, "expected a finite number of seconds, got nan"),
    (["ping", "--max-age", "inf"], 2, "expected a finite number of seconds, got inf"),
    (["job", "*"], 2, "'*' is not a job id"),
    (["job", "a" * 129], 2, "at most 128"),
    (["retry", "default", "x[1]"], 2, "is not a job id"),
])
def test_mpqctl_refuses_odd_arguments_in_one_line(broker_url, args, code, why):
    assert why in one_line(run("ctl", "--broker", broker_url, *args), "mpqctl", code)


def test_mpqueue_reload_refuses_a_timeout_that_is_not_a_number_of_seconds(tmp_path):
    for value in ("nan", "inf", "0"):
        line = one_line(run("cli", "reload", "svc", "--timeout", value, env={"MPQUEUE_RUNTIME_DIR": str(tmp_path)}),
                        "mpqueue", 2)
        assert "--timeout" in line


def test_a_huge_failed_limit_means_every_failed_job(broker_url):
    from mpqueue import Client
    Client(broker_url).push("default", "testtasks:record", args=["x"])      # registers the queue
    result = run("ctl", "--broker", broker_url, "failed", "default", "--limit", "9" * 20, "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stderr


def test_a_job_id_is_never_a_pattern(broker_url):
    # Given a scheduled job: the Redis broker scans the schedule for it by id
    from mpqueue import Client
    client = Client(broker_url)
    job_id = client.push("default", "testtasks:record", args=["later"], delay=3600)
    # Then only its exact id finds it: a glob, or a prefix, finds nothing
    assert client.broker.find("default", job_id)["state"] == "scheduled"
    for probe in ("*", job_id[:4] + "*", job_id[:-1] + "?", "[0-9a-f]" + job_id[1:]):
        assert client.broker.find("default", probe) is None, probe
    assert one_line(run("ctl", "--broker", broker_url, "job", job_id[:4] + "*"), "mpqctl", 2)


def test_mpqctl_push_to_a_queue_no_service_declares_is_refused(broker_url, tmp_path):
    from mpqueue import Client
    Client(broker_url).push("default", "testtasks:record", args=["x"])      # a service's queue: known
    line = one_line(run("ctl", "--broker", broker_url, "push", "defualt", "m:f"), "mpqctl", 1)
    assert line == "mpqctl: unknown queue 'defualt' (known: default); --new-queue pushes anyway"
    # the typo was not registered: later commands still refuse it
    assert "unknown queue" in one_line(run("ctl", "--broker", broker_url, "status", "defualt"), "mpqctl", 1)
    # With --new-queue it is pushed, and known from then on
    assert run("ctl", "--broker", broker_url, "push", "--new-queue", "fresh", "m:f").returncode == 0
    assert run("ctl", "--broker", broker_url, "status", "fresh").returncode == 0
    # A queue of the service named by --config is known even before the service ever ran
    cfg = config(tmp_path, broker_url, extra="")
    assert run("ctl", "--config", str(cfg), "push", "default", "m:f").returncode == 0
