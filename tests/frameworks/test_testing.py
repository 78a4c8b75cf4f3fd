"""The documented way to test an app (docs/frameworks.md, "Testing"): each
framework's own test runner, in a process of its own, with a live Redis named
as the broker by the app's settings or config, and MPQUEUE_BROKER=sync:// in
the environment. The apps' example tests pass (their jobs ran inline) and the
live broker received nothing: the environment wins over the settings."""
import os
import subprocess
import sys

import pytest
import yaml

from .conftest import APPS

pytest.importorskip("django")


@pytest.fixture
def live_service(tmp_path, redis_url):
    """The YAML of a service on our Redis (db 0), as a developer's settings name it."""
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump({"broker": redis_url, "queues": {"shop": {}, "blog": {}, "signup": {}}}))
    return path


@pytest.fixture
def forced_sync_env(tmp_path, redis_url, live_service):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPQUEUE_", "BLOG_", "DJANGO_"))}
    results = redis_url.rsplit("/", 1)[0] + "/1"         # where the example tasks write: not the broker's db
    env.update(PYTHONPATH=str(APPS), MPQUEUE_BROKER="sync://", SHOP_DB=str(tmp_path / "shop.sqlite3"),
               SHOP_MPQUEUE_CONFIG=str(live_service), BLOG_MPQUEUE_CONFIG=str(live_service),
               BLOG_RESULTS_URL=results, MPQ_TEST_REDIS=results)
    return env


def run(args, env):
    out = subprocess.run(args, cwd=APPS, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def pytest_args(path, *extra):
    return [sys.executable, "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider", "-o", "addopts=",
            "--rootdir", str(APPS), *extra, str(APPS / path)]


def assert_the_live_broker_got_nothing(rdb):
    assert rdb.dbsize() == 0, sorted(rdb.keys())


def test_django_manage_py_test_with_sync_in_the_environment_pushes_nothing_to_the_settings_broker(
        forced_sync_env, rdb):
    out = run([sys.executable, "manage.py", "test", "shop", "-v", "2"], forced_sync_env)
    assert "Ran 2 tests" in out.stderr
    assert_the_live_broker_got_nothing(rdb)


def test_pytest_django_with_sync_in_the_environment_pushes_nothing(forced_sync_env, rdb):
    pytest.importorskip("pytest_django")
    out = run(pytest_args("shop/pytest_tests.py", "--ds", "shop.settings"), forced_sync_env)
    assert "1 passed" in out.stdout
    assert_the_live_broker_got_nothing(rdb)


def test_flask_test_client_with_sync_in_the_environment_pushes_nothing_to_the_configs_broker(forced_sync_env, rdb):
    pytest.importorskip("flask")
    out = run(pytest_args("blog/tests.py"), forced_sync_env)
    assert "2 passed" in out.stdout
    assert_the_live_broker_got_nothing(rdb)


def test_fastapi_testclient_with_sync_in_the_environment_pushes_nothing(forced_sync_env, live_service, rdb):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")            # Starlette's TestClient
    env = {**forced_sync_env, "MPQUEUE_CONFIG": str(live_service)}
    out = run(pytest_args("signup/tests.py"), env)
    assert "1 passed" in out.stdout
    assert_the_live_broker_got_nothing(rdb)
