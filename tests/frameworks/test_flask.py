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
