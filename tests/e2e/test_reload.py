"""SIGHUP / `mpqueue reload`: a new generation of workers overlaps the old one;
no running job is interrupted, none is lost, and a bad config changes nothing."""
import signal
import subprocess
import sys

import yaml

from mpqueue import Client
from tests.support import wait_for


def reload_cmd(svc, timeout=50, pid=None):
    given = ["--pid", str(pid)] if pid else []
    return subprocess.run([sys.executable, "-m", "mpqueue.ops.cli", "reload", "--config", str(svc.config_path),
                           "--timeout", str(timeout), *given], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "MPQUEUE_RUNTIME_DIR": str(svc.tmp / "run")})


def edit(svc, **changes):
    cfg = yaml.safe_load(svc.config_path.read_text())
    cfg.update(changes)
    svc.config_path.write_text(yaml.safe_dump(cfg))


def test_reload_replaces_every_worker_and_applies_the_new_count_without_interrupting_a_job(service, redis_url, rdb):
    # Given a service with 2 workers, one of them running a 2 s job
    svc = service().start()
    client = Client(redis_url)
    client.push("default", "testtasks:sleep_record", args=["long", 2.0])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="long job start")
    old = set(svc.worker_pids())
    # When the worker count is changed and the service reloaded
    edit(svc, queues={"default": {"workers": 3}})
    result = reload_cmd(svc)
    # Then the reload completes, reported to systemd as RELOADING then READY
    assert result.returncode == 0, result.stderr
    msgs = svc.read_messages()
    reloading = next(i for i, m in enumerate(msgs) if "RELOADING=1" in m and "MONOTONIC_USEC=" in m)
    assert any("READY=1" in m for m in msgs[reloading + 1:]), msgs
    # and 3 new workers serve while the old busy one finishes its job, then exits
    new = wait_for(lambda: (p := set(svc.worker_pids())) and not (p & old) and len(p) == 3 and p, 15,
                   what="only new workers left")
    assert len(new) == 3
    assert rdb.lrange("test:runs", 0, -1) == ["long"]          # finished, once
    assert rdb.lrange("test:starts", 0, -1) == ["long"]        # not restarted
    # and jobs pushed after the reload run
    client.push("default", "testtasks:record", args=["after"])
    wait_for(lambda: rdb.llen("test:runs") == 2, 10, what="job after reload")


def test_reload_with_an_invalid_config_fails_and_the_old_workers_keep_serving(service, redis_url, rdb):
    svc = service().start()
    old = set(svc.worker_pids())
    svc.config_path.write_text(svc.config_path.read_text() + "\nbogus_key: 1\n")
    result = reload_cmd(svc)
    assert result.returncode == 1
    assert "bogus_key" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert set(svc.worker_pids()) == old
    Client(redis_url).push("default", "testtasks:record", args=["still"])
    wait_for(lambda: rdb.llen("test:runs") == 1, 10, what="job served by the old workers")
    assert any("STATUS=reload failed" in m for m in svc.read_messages())


def test_reload_onto_code_that_does_not_import_keeps_the_old_workers(service, redis_url, rdb):
    svc = service().start()
    old = set(svc.worker_pids())
    (svc.tmp / "code" / "testtasks.py").write_text("raise ImportError('broken deploy')\n")
    result = reload_cmd(svc)
    assert result.returncode == 1 and "broken deploy" in result.stderr
    assert old <= set(svc.worker_pids())
    Client(redis_url).push("default", "testtasks:record", args=["old code"])
    wait_for(lambda: rdb.llen("test:runs") == 1, 10, what="job served by the old workers")


def test_a_queue_added_by_reload_starts_and_a_removed_one_stops(service, redis_url, rdb):
    svc = service({"queues": {"default": {"workers": 1}, "gone": {"workers": 1}}}).start()
    edit(svc, queues={"default": {"workers": 1}, "added": {"workers": 1, "mode": "dispatch"}})
    assert reload_cmd(svc).returncode == 0
    wait_for(lambda: len(svc.worker_pids()) == 2, 10, what="2 workers after reload")
    Client(redis_url).push("added", "testtasks:record", args=["new queue"])
    wait_for(lambda: rdb.llen("test:runs") == 1, 10, what="job on the added queue")
    svc.signal(signal.SIGTERM)
    assert svc.proc.wait(20) == 0


def test_reload_waits_for_the_running_supervisor_even_after_a_restart(service, redis_url, rdb):
    # Given a service reloaded once, then restarted (its reload count starts again)
    svc = service().start()
    assert reload_cmd(svc).returncode == 0
    assert svc.stop() == 0
    svc.start()
    # When it is reloaded again, the status left by the previous process is not
    # mistaken for this one's: the command waits for this reload and succeeds
    result = reload_cmd(svc, timeout=15)
    assert result.returncode == 0, result.stderr
    assert "reloaded" in result.stdout


def test_after_a_failed_reload_recycled_workers_are_replaced(service, redis_url, rdb):
    # Given one worker that recycles itself every 2 jobs
    svc = service({"queues": {"default": {"workers": 1, "max_jobs": 2}}}).start()
    # When a reload fails: the new configuration imports a module that does not exist
    imports = yaml.safe_load(svc.config_path.read_text())["imports"]
    edit(svc, imports=[*imports, "no_such_module_anywhere"])
    result = reload_cmd(svc)
    assert result.returncode == 1 and "no_such_module_anywhere" in result.stderr
    # Then the old configuration keeps a full complement: six jobs need three workers in turn
    client = Client(redis_url)
    for i in range(6):
        client.push("default", "testtasks:record", args=[f"j{i}"])
    wait_for(lambda: rdb.llen("test:runs") == 6, 30, what="all six jobs, across recycled workers")
    pids = {line.split()[4] for line in rdb.lrange("test:runs", 0, -1)}
    assert len(pids) == 3, pids
    assert "retrying in" not in svc.log()         # the failed configuration is dropped, not retried
    assert svc.stop() == 0
