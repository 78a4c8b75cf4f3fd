"""Flask, end to end: a real app built by its factory (apps/blog) pushes from a
view; the workers build the same app (`framework: {flask: "blog:create_app"}`)
and run each job inside its app context, where `current_app.config` is theirs."""
import pytest
import yaml

from tests.support import wait_for

from .conftest import app_service

pytest.importorskip("flask")


@pytest.fixture
def blog_env(monkeypatch, redis_url):
    monkeypatch.setenv("BLOG_RESULTS_URL", redis_url)
    return {"BLOG_GREETING": "Bonjour", "BLOG_RESULTS_URL": redis_url}


def blog(service, framework=None, **settings):
    return app_service(service, framework or {"flask": "blog:create_app"}, ["blog.tasks"], "blog", **settings)


@pytest.fixture
def web_app(monkeypatch):
    """The web side: the app of this process, connected by init_app from its config."""
    from mpqueue.producer.default import set_default_client

    def make(svc):
        from blog import create_app
        monkeypatch.setenv("BLOG_MPQUEUE_CONFIG", str(svc.config_path))
        return create_app()
    yield make
    set_default_client(None)


def test_a_view_pushes_and_the_job_uses_the_workers_app_config(service, blog_env, web_app, rdb):
    svc = blog(service).start(extra_env=blog_env)
    app = web_app(svc)          # held: Flask 2.2's JSON provider only has a weak reference to it
    response = app.test_client().post("/welcome/ada")
    assert response.status_code == 202 and response.get_json()["job"]
    wait_for(lambda: rdb.lrange("blog:sent", 0, -1) == ["Bonjour, ada"], 15, what="the welcome job")


def test_async_jobs_each_have_the_app_context_on_the_workers_loop(service, blog_env, producer, rdb):
    from blog.tasks import welcome, welcome_async
    blog(service, concurrency=4).start(extra_env=blog_env)
    names = [f"n{i}" for i in range(8)]
    for name in names:
        welcome_async.push(name)
    welcome.push("sync")            # a plain job on the same worker: a thread of its own
    expected = sorted([f"Bonjour, {n} (async)" for n in names] + ["Bonjour, sync"])
    wait_for(lambda: sorted(rdb.lrange("blog:sent", 0, -1)) == expected, 20, what="9 welcome jobs")


def test_start_hooks_run_inside_the_app_context_plain_and_async(service, blog_env, rdb):
    svc = blog(service, concurrency=2, on_worker_start="blog_start:on_start_async")
    cfg = yaml.safe_load(svc.config_path.read_text())
    cfg["on_worker_start"] = "blog_start:on_start"
    svc.config_path.write_text(yaml.safe_dump(cfg))
    svc.start(extra_env=blog_env)
    assert rdb.lrange("blog:booted", 0, -1) == ["blog sync", "blog async"]


def status_failed(svc):
    return next((m for m in svc.read_messages() if "STATUS=failed" in m), None)


def test_a_factory_that_raises_fails_the_service_at_start(service, blog_env):
    svc = blog(service, framework={"flask": "broken_factory:create_app"}).start(wait_ready=False,
                                                                               extra_env=blog_env)
    assert svc.proc.wait(30) == 70
    assert "RuntimeError: BLOG_SECRET_KEY is not set" in svc.log()
    assert "BLOG_SECRET_KEY is not set" in wait_for(lambda: status_failed(svc), 5, what="STATUS=failed")


def test_a_factory_that_gives_no_app_fails_the_boot_saying_so(service, blog_env):
    svc = blog(service, framework={"flask": "os:getcwd"}).start(wait_ready=False, extra_env=blog_env)
    assert svc.proc.wait(30) == 70
    assert "os:getcwd gave str, not a Flask app" in wait_for(lambda: status_failed(svc), 5, what="STATUS=failed")


@pytest.fixture
def make_app(monkeypatch, redis_url):
    """An app of this process, its config from BLOG_* variables (no worker, no default client)."""
    monkeypatch.delenv("MPQUEUE_BROKER", raising=False)
    monkeypatch.delenv("MPQUEUE_CONFIG", raising=False)
    monkeypatch.setenv("BLOG_RESULTS_URL", redis_url)
    monkeypatch.setenv("BLOG_GREETING", "Bonjour")

    def make(**config):
        from blog import create_app
        for key in ("BLOG_MPQUEUE_BROKER", "BLOG_MPQUEUE_CONFIG"):
            monkeypatch.delenv(key, raising=False)
        for key, value in config.items():
            monkeypatch.setenv(f"BLOG_{key}", value)
        return create_app()
    return make


def test_sync_runs_a_push_from_outside_any_request_inside_the_apps_context(make_app, rdb):
    from blog.tasks import welcome
    app = make_app(MPQUEUE_BROKER="sync://")
    job = welcome.push("ada")           # as from a CLI command or a script: no app context here
    assert job.status() == "done"
    assert rdb.lrange("blog:sent", 0, -1) == ["Bonjour, ada"]
    assert app.extensions["mpqueue"].client is job.client


def test_two_apps_each_push_through_their_own_client(make_app, redis_url, rdb):
    from blog.tasks import welcome
    inline, live = make_app(MPQUEUE_BROKER="sync://"), make_app(MPQUEUE_BROKER=redis_url)
    with inline.app_context():
        ran = welcome.push("inline")
    with live.app_context():
        waits = welcome.push("live")
    assert (ran.status(), waits.status()) == ("done", "ready")
    assert rdb.lrange("blog:sent", 0, -1) == ["Bonjour, inline"]


def test_the_environment_wins_over_the_apps_config(make_app, monkeypatch, redis_url, rdb):
    from blog.tasks import welcome
    monkeypatch.setenv("MPQUEUE_BROKER", "sync://")
    app = make_app(MPQUEUE_BROKER=redis_url)
    assert app.extensions["mpqueue"].origin == "$MPQUEUE_BROKER"
    with app.app_context():
        assert welcome.push("env").status() == "done"
    assert rdb.keys("*") == ["blog:sent"]


def test_a_config_without_init_app_says_to_call_it(make_app):
    from flask import Flask

    from blog.tasks import welcome
    app = Flask("no_init")
    app.config["MPQUEUE_BROKER"] = "sync://"
    with app.app_context(), pytest.raises(RuntimeError, match=r"app.config has MPQUEUE_BROKER, but it is read only "
                                                              r"by mpqueue.contrib.flask.init_app\(app\)"):
        welcome.push("x")
