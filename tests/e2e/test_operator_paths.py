"""The operator's paths around a running service: the name systemd knows it by,
a deploy by symlink, and a pid file that outlived its process. Real `mpqueue` and
`mpqctl` processes throughout."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_reload import reload_cmd
from tests.support import free_port, wait_for


def tool(module, *args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", f"mpqueue.ops.{module}", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_a_named_service_whose_name_key_differs_is_refused_by_every_tool(tmp_path, redis_url):
    # Given /etc/mpqueue/orders.yaml saying `name: shop`: systemd runs it as mpqueue@orders,
    # while the lock, the reload and `{name}` in an SQLite URL would follow "shop"
    (tmp_path / "orders.yaml").write_text(yaml.safe_dump(
        {"name": "shop", "broker": redis_url, "imports": ["json"], "queues": {"default": {"workers": 1}}}))
    env = {"MPQUEUE_CONFIG_DIR": str(tmp_path), "MPQUEUE_RUNTIME_DIR": str(tmp_path / "run")}
    for module, args in (("cli", ["check", "orders"]), ("cli", ["run", "orders"]),
                         ("ctl", ["-s", "orders", "status"])):
        result = tool(module, *args, env=env)
        # Then each refuses it in one line, naming the key, as a configuration error (78)
        assert result.returncode == 78, (args, result.returncode, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "name: 'shop'" in lines[0] and "'orders'" in lines[0], lines
    # And a file without `name:`, or with the same name, is accepted
    (tmp_path / "orders.yaml").write_text(yaml.safe_dump(
        {"name": "orders", "broker": redis_url, "imports": ["json"], "queues": {"default": {"workers": 1}}}))
    assert tool("cli", "check", "orders", env=env).returncode == 0


def test_reload_after_a_deploy_by_symlink_reads_the_release_the_link_names_now(service, redis_url):
    # Given a service started from current/svc.yaml, current -> releases/r1
    svc = service({"queues": {"default": {"workers": 1}}})
    text = svc.config_path.read_text()
    for release, workers in (("r1", 1), ("r2", 3)):
        (svc.tmp / "releases" / release).mkdir(parents=True)
        cfg = yaml.safe_load(text)
        cfg["queues"]["default"]["workers"] = workers
        (svc.tmp / "releases" / release / "svc.yaml").write_text(yaml.safe_dump(cfg))
    os.symlink("releases/r1", svc.tmp / "current")
    svc.config_path = svc.tmp / "current" / "svc.yaml"
    svc.start()
    assert len(svc.worker_pids()) == 1
    # When the deploy flips the link (atomically, as deploy tools do) and reloads
    os.symlink("releases/r2", svc.tmp / "current.new")
    os.replace(svc.tmp / "current.new", svc.tmp / "current")
    result = reload_cmd(svc)
    # Then the new release's file is the one applied
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(svc.worker_pids()) == 3, 20, what="the 3 workers of release r2")
    assert svc.stop() == 0


def test_reload_never_signals_a_process_that_does_not_hold_the_lock(service, tmp_path):
    # Given a lock file left by an instance stopped outside systemd, whose pid now
    # belongs to an unrelated process
    svc = service()
    (svc.tmp / "run").mkdir(parents=True, exist_ok=True)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (svc.tmp / "run" / "svc.lock").write_text(f"{bystander.pid}\n")
        # When the operator reloads the service
        result = reload_cmd(svc, timeout=5)
        # Then it says the service is not running, and the bystander lives
        assert result.returncode == 1 and "not running" in result.stderr, result.stderr
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    # And against a running service it still works
    svc.start()
    assert reload_cmd(svc).returncode == 0
    # And a pid given with --pid (the unit passes $MAINPID) is signalled only if it holds the lock
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        result = reload_cmd(svc, timeout=5, pid=bystander.pid)
        assert result.returncode == 1 and f"pid {bystander.pid} does not hold its lock" in result.stderr, result.stderr
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    assert reload_cmd(svc, pid=svc.proc.pid).returncode == 0
    assert svc.stop() == 0


def test_an_unwritable_log_file_is_one_line_and_exit_78_from_check_and_run(tmp_path, redis_url):
    env = {"MPQUEUE_RUNTIME_DIR": str(tmp_path / "run")}
    (tmp_path / "target.log").write_text("")
    os.symlink(tmp_path / "target.log", tmp_path / "link.log")
    cases = {"check": {"missing": "does not exist", "link": "is a symbolic link"},
             "run": {"missing": "No such file or directory", "link": "Too many levels of symbolic links"}}
    for case, log_file in (("missing", tmp_path / "no" / "such" / "svc.log"), ("link", tmp_path / "link.log")):
        config = tmp_path / "svc.yaml"
        config.write_text(yaml.safe_dump({"name": "svc", "broker": redis_url, "imports": ["json"],
                                          "log": {"file": str(log_file)}, "queues": {"default": {"workers": 1}}}))
        for command in ("check", "run"):
            result = tool("cli", command, "--config", str(config), env=env)
            lines = result.stderr.strip().splitlines()
            # One line naming the key and the cause, exit 78 (no restart loop), never a traceback
            assert result.returncode == 78, (command, result.returncode, result.stderr)
            assert len(lines) == 1 and "log.file" in lines[0] and cases[command][case] in lines[0], lines
            if case == "missing":
                assert "LogsDirectory=mpqueue/svc" in lines[0]      # how to give the unit a log directory
    assert (tmp_path / "target.log").read_text() == ""          # nothing written through the link


def test_check_before_the_first_start_passes_for_a_log_directory_systemd_makes_at_start(tmp_path, redis_url):
    # Given a log.file in /var/log/mpqueue/NAME/, the directory LogsDirectory=mpqueue/NAME makes at start
    if os.path.lexists("/var/log/mpqueue") and not os.path.isdir("/var/log/mpqueue"):
        pytest.skip("/var/log/mpqueue is not a directory on this machine")
    name = f"checked{os.getpid()}"
    log_file = f"/var/log/mpqueue/{name}/{name}.log"
    assert not os.path.lexists(os.path.dirname(log_file))
    config = tmp_path / "svc.yaml"
    config.write_text(yaml.safe_dump({"name": name, "broker": redis_url, "imports": ["json"],
                                      "log": {"file": log_file}, "queues": {"default": {"workers": 1}}}))
    # When the operator checks it before the service ever ran, Then it passes
    result = tool("cli", "check", "--config", str(config), env={"MPQUEUE_RUNTIME_DIR": str(tmp_path / "run")})
    assert result.returncode == 0 and ": ok: service" in result.stdout, result.stderr
    assert not os.path.lexists(os.path.dirname(log_file))       # check makes nothing


@pytest.fixture
def redis_with_password(tmp_path):
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--requirepass", "s3cret/pw", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL)
    import redis
    probe = redis.Redis(host="127.0.0.1", port=port, password="s3cret/pw")
    try:
        wait_for(lambda: _answers(probe), 10, 0.05, what="redis-server with a password")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(client) -> bool:
    import redis
    try:
        return client.ping()
    except redis.exceptions.ConnectionError:
        return False


PUSH = "import mpqueue, sys; c = mpqueue.connect(sys.argv[1]); print(c.push('default', 'x:y'))"


def test_the_readmes_credential_setup_works_for_the_tools_outside_the_unit(tmp_path, redis_with_password):
    # Given the setup of docs/howto/systemd.md (Secrets): the password only in a credential, named through
    # ${CREDENTIALS_DIRECTORY}, which systemd sets inside the unit and nowhere else
    name = f"credtest{os.getpid()}"
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"broker": f"redis://127.0.0.1:{redis_with_password}/0",
                                      "broker_password_file": "${CREDENTIALS_DIRECTORY}/redis-password",
                                      "imports": ["json"], "queues": {"default": {"workers": 1}}}))
    config.chmod(0o640)
    base = {k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY", "MPQUEUE_CREDENTIALS_DIR")}
    base.update(MPQUEUE_CONFIG_DIR=str(etc), MPQUEUE_RUNTIME_DIR=str(tmp_path / "run"))

    def tools(env):
        return [subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
                for command in ([sys.executable, "-m", "mpqueue.ops.cli", "check", name],
                                [sys.executable, "-m", "mpqueue.ops.ctl", "-s", name, "status"],
                                [sys.executable, "-c", PUSH, str(config)])]

    # With no credential anywhere: one line saying what to do, exit 78 for the CLIs
    for result in tools(base)[:2]:
        assert result.returncode == 78 and "MPQUEUE_CREDENTIALS_DIR" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    # With MPQUEUE_CREDENTIALS_DIR naming a directory holding the same file: every tool works
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    (creds / "redis-password").write_text("s3cret/pw\n")
    for result in tools({**base, "MPQUEUE_CREDENTIALS_DIR": str(creds)}):
        assert result.returncode == 0, result.stderr
    # As root while the unit runs: from where systemd keeps its credentials
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        unit_dir = Path("/run/credentials") / f"mpqueue@{name}.service"
        unit_dir.mkdir(parents=True, mode=0o700)
        try:
            (unit_dir / "redis-password").write_text("s3cret/pw\n")
            for result in tools(base):
                assert result.returncode == 0, result.stderr
        finally:
            shutil.rmtree(unit_dir)


def test_two_tasks_under_one_name_fail_the_boot_naming_both(service):
    # Given two modules that each define a task named "send"
    svc = service()
    code = svc.tmp / "code"
    (code / "dup_a.py").write_text("import mpqueue\n\n@mpqueue.task(name='send')\ndef send(x):\n    return 'a'\n")
    (code / "dup_b.py").write_text("import mpqueue\n\n@mpqueue.task(name='send')\ndef notify(x):\n    return 'b'\n")
    cfg = yaml.safe_load(svc.config_path.read_text())
    cfg["imports"] = ["testtasks", "dup_a", "dup_b"]
    svc.config_path.write_text(yaml.safe_dump(cfg))
    # When the service starts, its workers refuse to boot: the start fails (70),
    # saying which two definitions clash, in the log and in STATUS=
    svc.start(wait_ready=False)
    assert svc.proc.wait(60) == 70
    status = next(m for m in svc.read_messages() if "STATUS=" in m and "ERRNO=" in m)
    assert "task name 'send' is defined twice, by dup_a:send and by dup_b:notify" in status, status
    assert "dup_a:send and by dup_b:notify" in svc.log()


READABLE = ("orders.yaml: broker: the URL holds a password but the file is readable by other users (mode 0644); "
            "chmod o-r it, or use broker_password_file with a systemd credential")
REFUSE_PUSH = ("import sys, mpqueue\nfrom mpqueue.core.config import ConfigError\n"
               "try:\n    mpqueue.connect(sys.argv[1])\nexcept ConfigError as exc:\n    sys.exit(f'api: {exc}')")


def test_a_password_in_a_world_readable_yaml_is_refused_alike_by_every_tool(tmp_path):
    # Given /etc/mpqueue as the package makes it (0750) holding a YAML with the password
    # in its URL, and the file readable by everyone (0644)
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o750)
    config = etc / "orders.yaml"
    config.write_text(yaml.safe_dump({"broker": "redis://:s3cret@127.0.0.1:1/0", "imports": ["json"],
                                      "queues": {"default": {"workers": 1}}}))
    config.chmod(0o644)
    env = {"MPQUEUE_CONFIG_DIR": str(etc), "MPQUEUE_RUNTIME_DIR": str(tmp_path / "run")}
    entry_points = [("cli", ["check", "orders"]), ("cli", ["check", "--config", str(config)]),
                    ("cli", ["run", "orders"]), ("cli", ["web", "orders"]), ("cli", ["web", "--config", str(config)]),
                    ("ctl", ["-s", "orders", "status"]), ("ctl", ["--config", str(config), "failed", "default"]),
                    ("ctl", ["status"])]      # MPQUEUE_CONFIG, below
    # When each tool loads it
    for module, args in entry_points:
        result = tool(module, *args, env={**env, "MPQUEUE_CONFIG": str(config)})
        # Then each refuses with the same one line (run's) and exit 78, the password never shown
        prog = "mpqueue" if module == "cli" else "mpqctl"
        assert result.returncode == 78, (args, result.returncode, result.stderr)
        assert result.stderr.strip().splitlines() == [f"{prog}: {READABLE}"], (args, result.stderr)
        assert "s3cret" not in result.stdout + result.stderr
    # And the Python API (mpqueue.connect, Client.from_config) raises ConfigError with the same text
    result = subprocess.run([sys.executable, "-c", REFUSE_PUSH, str(config)], capture_output=True, text=True,
                            timeout=60)
    assert result.stderr.strip() == f"api: {READABLE}"
    # When the file is group-readable only (the package's root:mpqueue 0640)
    config.chmod(0o640)
    # Then the same tools load it: check passes, mpqctl goes on to the broker (down here: exit 1)
    assert tool("cli", "check", "orders", env=env).returncode == 0
    result = tool("ctl", "-s", "orders", "status", env=env)
    assert result.returncode == 1 and "readable" not in result.stderr, result.stderr
