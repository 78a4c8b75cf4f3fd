"""`flask mpqueue status|push|run` (issue #28, as Flask-RQ2's `flask rq ...`): the
group every Flask app gets from mpqueue's `flask.commands` entry point, acting on
the service the app's config names (BLOG_MPQUEUE_CONFIG -> MPQUEUE_CONFIG)."""
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.support import wait_for

from .conftest import APPS, app_service

pytest.importorskip("flask")


def blog_service(service):
    return app_service(service, {"flask": "blog:create_app"}, ["blog.tasks"], "blog")


def flask_env(redis_url, config=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPQUEUE_", "BLOG_", "FLASK_"))}
    env.update(PYTHONPATH=str(APPS), BLOG_RESULTS_URL=redis_url, BLOG_GREETING="Hej")
    if config:
        env["BLOG_MPQUEUE_CONFIG"] = str(config)
    return env


def flask(*args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "flask", "--app", "blog:create_app", "mpqueue", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_flask_mpqueue_push_then_run_serves_the_job_and_status_shows_it(service, redis_url, rdb):
    svc = blog_service(service)          # its YAML; `flask mpqueue run` runs it
    env = flask_env(redis_url, svc.config_path)
    # When a job is pushed through the app's CLI
    out = flask("push", "blog", "blog.tasks:welcome", "--args", '["lin"]', env=env)
    assert out.returncode == 0, out.stderr
    # Then status lists it waiting, in a queue no node serves yet
    out = flask("status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    queue = json.loads(out.stdout)["queues"]["blog"]
    assert (queue["ready"], queue["served"]) == (1, False)
    # And `flask mpqueue run` serves it, the job running in the app's context
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "blog:create_app", "mpqueue", "run"],
                            env={**env, "MPQUEUE_RUNTIME_DIR": str(svc.tmp / "run")}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: rdb.lrange("blog:sent", 0, -1) == ["Hej, lin"], 30, what="the pushed job run")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_an_app_naming_no_service_gets_a_usage_error(redis_url):
    out = flask("status", env=flask_env(redis_url))
    assert out.returncode == 2 and "MPQUEUE_CONFIG" in out.stderr.strip().splitlines()[-1]


def test_init_cli_adds_the_group_once():
    from flask import Flask

    from mpqueue.contrib.flask_cli import init_cli, mpqueue_cli
    app = Flask("x")
    init_cli(app)
    init_cli(app)
    assert app.cli.commands["mpqueue"] is mpqueue_cli


@pytest.mark.parametrize("concurrency", [1, 2])
def test_stop_hooks_run_inside_the_app_context_plain_and_async(service, redis_url, rdb, concurrency):
    # Given a Flask service with an async stop hook on its queue and a plain one for the service
    svc = app_service(service, {"flask": "blog:create_app"}, ["blog.tasks"], "blog", concurrency=concurrency,
                      on_worker_stop="blog_stop:on_stop_async")
    import yaml
    cfg = yaml.safe_load(svc.config_path.read_text())
    cfg["on_worker_stop"] = "blog_stop:on_stop"
    svc.config_path.write_text(yaml.safe_dump(cfg))
    svc.start(extra_env={"BLOG_RESULTS_URL": redis_url})
    # When it stops, its worker ran both, the queue's first, with current_app
    assert svc.stop() == 0
    assert rdb.lrange("blog:stopped", 0, -1) == ["blog async", "blog sync"]


def test_the_environment_wins_over_the_apps_config_as_for_push(tmp_path, redis_url, broker_url):
    # The app's config names a YAML that does not exist; MPQUEUE_BROKER in the environment wins.
    env = {**flask_env(redis_url, tmp_path / "missing.yaml"), "MPQUEUE_BROKER": broker_url}
    out = flask("status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert "queues" in json.loads(out.stdout)
