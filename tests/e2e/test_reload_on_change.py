"""`mpqueue run --reload-on-change` (issue #28, development mode): a saved task
module reloads the workers as SIGHUP does; under systemd it is ignored, saying so."""
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from mpqueue.producer.client import Client
from tests.support import wait_for

CODE = 'import mpqueue\n\n\n@mpqueue.task()\ndef version():\n    return "{v}"\n'


@pytest.fixture
def dev_service(tmp_path, redis_url):
    code = tmp_path / "code"
    code.mkdir()
    (code / "devtasks.py").write_text(CODE.format(v="v1"))
    config = tmp_path / "dev.yaml"
    config.write_text(yaml.safe_dump({"name": "dev", "broker": redis_url, "path": [str(code)],
                                      "imports": ["devtasks"], "log": {"format": "text"},
                                      "queues": {"default": {"workers": 1}}}))
    procs = []

    def start(**env):
        environ = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "INVOCATION_ID")}
        environ.update(MPQUEUE_RUNTIME_DIR=str(tmp_path / "run"), **env)
        log = open(tmp_path / f"run{len(procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "mpqueue.ops.cli", "run", "--config", str(config),
                                 "--reload-on-change"], env=environ, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        procs.append(proc)
        return proc, tmp_path / f"run{len(procs) - 1}.log"
    yield code / "devtasks.py", start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def version(client):
    return client.push("default", "devtasks:version").result(timeout=15)


def save(path, text):
    path.write_text(text)
    later = time.time() + 2            # a different mtime even on a coarse-grained file system
    os.utime(path, (later, later))


def test_a_saved_task_module_reloads_the_workers(dev_service, redis_url):
    path, start = dev_service
    proc, _ = start()
    client = Client(redis_url)
    assert version(client) == "v1"
    # When the task's module is saved with a change
    save(path, CODE.format(v="v2"))
    # Then new workers serve it, without a restart of the service
    wait_for(lambda: version(client) == "v2", 30, what="the new code served")
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_under_systemd_it_is_ignored_with_one_line(dev_service, redis_url):
    path, start = dev_service
    proc, log = start(INVOCATION_ID="0123456789abcdef")
    client = Client(redis_url)
    assert version(client) == "v1"
    lines = [line for line in log.read_text().splitlines() if "--reload-on-change" in line]
    assert lines == ["mpqueue: --reload-on-change ignored: it is for development, and this runs under systemd "
                     "(INVOCATION_ID or NOTIFY_SOCKET set); deploys reload with `systemctl reload`"]
