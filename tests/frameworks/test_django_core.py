"""Django in this process (the shop project, as test_django.py sets it up): the
settings read at each push (the environment still winning), push_on_commit's
options and handle, arguments checked at push time, the query log cleared per
job under DEBUG, and hints for a missing `path:` or contrib app."""
import logging
import os
import subprocess
import sys

import pytest
import yaml

from .conftest import APPS
from .test_django import shop_db  # noqa: F401 - the module's Django set-up

django = pytest.importorskip("django")


@pytest.fixture(autouse=True)
def no_broker_in_the_environment(monkeypatch):
    monkeypatch.delenv("MPQUEUE_BROKER", raising=False)
    monkeypatch.delenv("MPQUEUE_CONFIG", raising=False)


def test_the_environment_wins_over_the_settings_even_when_overridden(monkeypatch, redis_url, rdb):
    from django.test import override_settings

    from shop.models import Order
    from shop.tasks import fulfil
    o = Order.objects.create(note="env wins")
    monkeypatch.setenv("MPQUEUE_BROKER", "sync://")
    with override_settings(MPQUEUE_BROKER=redis_url):
        fulfil.push(o.id)
    o.refresh_from_db()
    assert o.status == "fulfilled" and rdb.dbsize() == 0


def test_override_settings_applies_to_the_broker(redis_url, rdb):
    from django.test import override_settings

    from shop.models import Order
    from shop.tasks import fulfil
    o = Order.objects.create(note="overridden")
    with override_settings(MPQUEUE_BROKER="sync://"):
        fulfil.push(o.id)
    o.refresh_from_db()
    assert o.status == "fulfilled"
    with override_settings(MPQUEUE_BROKER=redis_url):
        fulfil.push(o.id)
    assert rdb.dbsize() > 0          # the job waits in Redis


def test_push_on_commit_takes_a_job_id_and_returns_a_handle_that_works_after_commit(producer):
    from django.db import transaction

    from mpqueue.contrib.django import push_on_commit
    from shop.models import Order
    from shop.tasks import fulfil
    with transaction.atomic():
        o = Order.objects.create(note="with id")
        handle = push_on_commit(fulfil, o.id, job_id=f"order-{o.id}", priority=5, delay=60)
        again = push_on_commit(fulfil, o.id, job_id=f"order-{o.id}")
    assert handle == f"order-{o.id}" and handle.status() == "scheduled" and not handle.duplicate
    assert again.duplicate
    job = producer.broker.find("shop", handle.id)
    assert job["state"] == "scheduled" and '"k"' not in job.get("payload", "")   # job_id never reached the task


def test_push_on_commit_checks_the_tasks_arguments_inside_the_transaction(producer):
    from django.db import transaction

    from mpqueue.contrib.django import push_on_commit
    from shop.models import Order
    from shop.tasks import fulfil
    with pytest.raises(TypeError, match="task shop.tasks:fulfil: wrong arguments: missing a required argument"):
        with transaction.atomic():
            Order.objects.create(note="bad call")
            push_on_commit(fulfil)
    assert not Order.objects.filter(note="bad call").exists()


def test_under_debug_each_job_starts_with_an_empty_query_log_and_a_warning_once(caplog):
    from django.test import override_settings

    from mpqueue.contrib.django import worker
    from shop.probes import count_logged_queries
    worker._warned_debug = False
    with override_settings(DEBUG=True, MPQUEUE_BROKER="sync://"), caplog.at_level(logging.WARNING, "mpqueue"):
        seen = [count_logged_queries.push().result(1) for _ in range(3)]
    assert seen == [1, 1, 1]
    assert sum("DEBUG is on" in r.getMessage() for r in caplog.records) == 1


def test_a_workers_scope_clears_the_query_log_under_debug():
    from django.db import connection
    from django.test import override_settings

    from mpqueue.contrib.django.worker import DjangoScope
    from shop.models import Order
    scope = DjangoScope()
    with override_settings(DEBUG=True):
        for _ in range(3):
            token = scope.enter()
            Order.objects.count()
            assert len(connection.queries_log) == 1
            scope.exit(token)


def test_the_contrib_app_left_out_of_installed_apps_says_to_add_it():
    code = ("from django.conf import settings\n"
            "settings.configure(INSTALLED_APPS=[], MPQUEUE_CONFIG='/etc/mpqueue/shop.yaml')\n"
            "import django; django.setup()\n"
            "import mpqueue\n"
            "@mpqueue.task(name='m:t')\n"
            "def t(): pass\n"
            "t.push()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQUEUE_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert ("the settings have MPQUEUE_CONFIG, but it is read only by the app \"mpqueue.contrib.django\": add it "
            "to INSTALLED_APPS") in out.stderr.splitlines()[-1]


def check(tmp_path, framework, path=None):
    config = {"broker": "redis://127.0.0.1:1/0", "imports": ["shop.tasks"], "queues": {"shop": {}},
              "framework": framework}
    if path is not None:
        config["path"] = path
    file = tmp_path / "shop.yaml"
    file.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    return subprocess.run([sys.executable, "-m", "mpqueue.ops.cli", "check", "--config", str(file)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_check_refuses_a_settings_module_that_does_not_exist(tmp_path):
    out = check(tmp_path, {"django": "shop.no_such_settings"}, [str(APPS)])
    assert out.returncode == 78
    assert out.stderr.strip().splitlines() == [
        f"mpqueue: {tmp_path / 'shop.yaml'}: framework.django: no module named 'shop.no_such_settings' (for "
        f"shop.no_such_settings): add the directory that holds shop/ to the service's `path:` (path: [{APPS}])"]


def test_check_says_to_set_path_when_the_project_is_not_on_it(tmp_path):
    out = check(tmp_path, {"django": "shop.settings"})
    assert out.returncode == 78
    assert "framework.django: no module named 'shop' (for shop.settings): add the directory that holds shop/ to " \
           "the service's `path:` (no path:)" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_check_finds_the_settings_and_the_flask_app_on_path(tmp_path):
    assert check(tmp_path, {"django": "shop.settings"}, [str(APPS)]).returncode == 0
    assert check(tmp_path, {"flask": "blog:create_app"}, [str(APPS)]).returncode == 0
    out = check(tmp_path, {"flask": "no_blog:create_app"}, [str(APPS)])
    assert out.returncode == 78 and "framework.flask: no module named 'no_blog'" in out.stderr


def status_failed(svc):
    return next((m for m in svc.read_messages() if "STATUS=failed" in m), None)


def test_a_worker_that_can_not_find_the_project_says_to_set_path(service):
    from tests.support import wait_for
    svc = service({"imports": ["shop.tasks"], "queues": {"shop": {"workers": 1}}, "framework": {"django": "shop.settings"}})
    svc.start(wait_ready=False, extra_env={"PYTHONPATH": ""})
    assert svc.proc.wait(30) == 70
    assert "No module named 'shop'" in wait_for(lambda: status_failed(svc), 5, what="STATUS=failed")
    assert "is the directory that holds shop/ in the service's `path:`?" in svc.log()


def test_a_sync_job_that_breaks_its_connection_does_not_poison_the_callers():
    from django.test import override_settings

    from shop.models import Order
    from shop.tasks import break_connection, record
    with override_settings(MPQUEUE_BROKER="sync://"):
        assert break_connection.push().status() == "failed"
        assert record.push("after").status() == "done"
    assert Order.objects.filter(note="after").exists()
    assert not Order.objects.filter(note="never committed").exists()


def test_a_sync_job_leaves_the_callers_open_iterator_alone():
    from django.test import override_settings

    from shop.models import Order
    from shop.tasks import fulfil
    ids = [Order.objects.create(note=f"it{i}").id for i in range(5)]
    with override_settings(MPQUEUE_BROKER="sync://"):
        for o in Order.objects.filter(id__in=ids).iterator(chunk_size=1):
            fulfil.push(o.id)
    assert Order.objects.filter(id__in=ids, status="fulfilled").count() == 5
