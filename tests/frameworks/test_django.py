"""Django on SQLite, end to end: a real project (apps/shop) whose views push on
commit, served by a real `mpqueue run` whose workers boot Django
(`framework: {django: shop.settings}`). Runs against Debian 12's Django 3.2 and
the newest (.ci/run)."""
import os
import subprocess
import sys

import pytest
import yaml

from tests.e2e.test_reload import reload_cmd
from tests.support import wait_for

from .conftest import APPS, app_service
from .django_project import restore, setup_shop_db

django = pytest.importorskip("django")


@pytest.fixture(scope="module", autouse=True)
def shop_db(tmp_path_factory):
    """Django set up in this process (the web side) on a fresh database, which the
    services' workers share (SHOP_DB reaches them through the environment)."""
    saved = setup_shop_db(tmp_path_factory)
    yield
    restore(saved)


@pytest.fixture(autouse=True)
def no_orders():
    from shop.models import Order
    Order.objects.all().delete()


@pytest.fixture
def web():
    from django.test import Client as WebClient
    return WebClient()


def shop(service, framework=None, **settings):
    return app_service(service, framework or {"django": "shop.settings"}, ["shop.tasks"], "shop", **settings)


def order(order_id):
    from shop.models import Order
    return Order.objects.filter(id=order_id).first()


def fulfilled(order_id):
    o = order(order_id)
    return o is not None and o.status == "fulfilled" and o


@pytest.mark.parametrize("mode, concurrency", [("grab", 1), ("grab", 3), ("dispatch", 1)])
def test_a_view_pushes_on_commit_and_the_job_reads_the_row(service, producer, web, mode, concurrency):
    # Given a service whose workers boot Django
    svc = shop(service, mode=mode, concurrency=concurrency).start()
    # When a view creates an order and pushes its job on commit, committing only
    # a second later (time for a worker to look for the row too early)
    response = web.post("/orders", {"note": "first", "pause": "1"})
    assert response.status_code == 201, response.content
    # Then the job found the row, in a worker process
    o = wait_for(lambda: fulfilled(response.json()["order"]), 15, what="the order fulfilled")
    assert o.worker_pid in svc.worker_pids()
    wait_for(lambda: producer.broker.find("shop", response.json()["job"])["state"] == "done", 10, what="done")


def test_without_on_commit_the_job_runs_before_the_row_exists(service, producer, web):
    # The control: the same view pushing inside its transaction fails its job.
    shop(service).start()
    response = web.post("/orders/naive", {"note": "too early", "pause": "3"})
    assert response.status_code == 201
    job = response.json()["job"]
    wait_for(lambda: producer.broker.find("shop", job)["state"] == "failed", 15, what="the job failed")
    assert order(response.json()["order"]).status == "new"
    (_, _, error), = producer.broker.failed("shop")
    assert "DoesNotExist" in error


def test_a_rolled_back_transaction_pushes_nothing(service, producer, web):
    shop(service).start()
    response = web.post("/orders", {"note": "declined", "declined": "1"})
    assert response.status_code == 402
    from shop.models import Order
    assert not Order.objects.exists()
    # A later order's job runs, and it is the only job there ever was.
    later = web.post("/orders", {"note": "later"}).json()
    wait_for(lambda: fulfilled(later["order"]), 15, what="the later order fulfilled")
    counts = wait_for(lambda: (c := producer.broker.counts("shop"))["done_total"] and c, 10, what="its outcome")
    assert (counts["done_total"], counts["failed_total"], counts["ready"], counts["scheduled"]) == (1, 0, 0, 0)


def test_push_on_commit_outside_a_transaction_pushes_at_once(service, producer):
    from mpqueue.contrib.django import push_on_commit
    from shop.models import Order
    from shop.tasks import fulfil
    shop(service).start()
    o = Order.objects.create(note="autocommit")
    push_on_commit(fulfil, o.id)
    wait_for(lambda: fulfilled(o.id), 15, what="the order fulfilled")


def test_a_bad_argument_raises_inside_the_transaction_and_rolls_it_back(producer):
    from django.db import transaction

    from mpqueue import PayloadError
    from mpqueue.contrib.django import push_on_commit
    from shop.models import Order
    from shop.tasks import fulfil
    with pytest.raises(PayloadError):
        with transaction.atomic():
            Order.objects.create(note="bad")
            push_on_commit(fulfil, object())
    assert not Order.objects.exists()
    assert producer.broker.counts("shop")["ready"] == 0


def test_a_job_that_breaks_its_connection_does_not_poison_the_next(service, producer):
    from shop.models import Order
    from shop.tasks import break_connection, record
    shop(service).start()
    # When one job leaves its connection inside a transaction, autocommit off,
    # and the next job on the same worker (one worker, one thread) writes a row
    broken = break_connection.push()
    record.push("after")
    # Then the second job's row is committed, on a fresh connection
    wait_for(lambda: Order.objects.filter(note="after").exists(), 15, what="the next job's row committed")
    assert not Order.objects.filter(note="never committed").exists()
    assert producer.broker.find("shop", broken)["state"] == "failed"


def test_a_logging_setting_does_not_silence_the_workers_job_log(service, producer):
    from shop.tasks import break_connection
    svc = shop(service, framework={"django": "shop.settings_logging"}).start()
    job = break_connection.push()
    wait_for(lambda: producer.broker.find("shop", job)["state"] == "failed", 15, what="the job failed")
    wait_for(lambda: "RuntimeError: left a transaction open" in svc.log(), 10, what="the failure in the log")


def test_async_tasks_use_the_orm_through_sync_to_async(service, producer):
    from django.db import transaction

    from mpqueue.contrib.django import push_on_commit
    from shop.models import Order
    from shop.tasks import fulfil_async
    shop(service, concurrency=4).start()
    with transaction.atomic():
        ids = [Order.objects.create(note=f"a{i}").id for i in range(8)]
        for i in ids:
            push_on_commit(fulfil_async, i)
    wait_for(lambda: Order.objects.filter(status="fulfilled").count() == 8, 20, what="8 async jobs")


def test_the_settings_name_the_service_so_push_needs_no_connect(service, rdb):
    # A web process of its own: only MPQUEUE_CONFIG in the settings points it at the service.
    svc = shop(service).start()
    code = ("import django; django.setup()\n"
            "from django.db import transaction\n"
            "from mpqueue.contrib.django import push_on_commit\n"
            "from shop.models import Order\n"
            "from shop.tasks import fulfil\n"
            "with transaction.atomic():\n"
            "    o = Order.objects.create(note='from settings')\n"
            "    push_on_commit(fulfil, o.id)\n"
            "print(o.id)\n")
    env = {**os.environ, "PYTHONPATH": str(APPS), "SHOP_MPQUEUE_CONFIG": str(svc.config_path)}
    env.pop("MPQUEUE_BROKER", None)
    env.pop("MPQUEUE_CONFIG", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: fulfilled(int(out.stdout)), 15, what="the order fulfilled")


def test_a_settings_path_that_can_not_be_read_stops_django_saying_which_setting(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(APPS), "SHOP_MPQUEUE_CONFIG": str(tmp_path / "missing.yaml")}
    out = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert "ImproperlyConfigured: MPQUEUE_CONFIG: missing.yaml: cannot read the file" in out.stderr


def test_settings_from_the_environment_when_the_yaml_names_none(service, producer, web):
    # DJANGO_SETTINGS_MODULE=shop.settings is in the service's environment (this process's)
    shop(service, framework={"django": None}).start()
    created = web.post("/orders", {"note": "env"}).json()
    wait_for(lambda: fulfilled(created["order"]), 15, what="the order fulfilled")


def status_failed(svc):
    return next((m for m in svc.read_messages() if "STATUS=failed" in m), None)


def test_settings_that_do_not_import_fail_the_service_at_start(service):
    svc = shop(service, framework={"django": "no_such_settings"}).start(wait_ready=False)
    assert svc.proc.wait(30) == 70
    assert "No module named 'no_such_settings'" in svc.log()
    assert "No module named 'no_such_settings'" in wait_for(lambda: status_failed(svc), 5, what="STATUS=failed")


def test_no_settings_anywhere_fails_the_boot_with_what_to_do(service):
    svc = shop(service, framework={"django": None}).start(wait_ready=False, extra_env={"DJANGO_SETTINGS_MODULE": ""})
    assert svc.proc.wait(30) == 70
    assert "set DJANGO_SETTINGS_MODULE" in wait_for(lambda: status_failed(svc), 5, what="STATUS=failed")


def test_a_reload_onto_broken_settings_keeps_the_old_workers(service, producer, web):
    svc = shop(service).start()
    old = set(svc.worker_pids())
    cfg = yaml.safe_load(svc.config_path.read_text())
    cfg["framework"] = {"django": "no_such_settings"}
    svc.config_path.write_text(yaml.safe_dump(cfg))
    result = reload_cmd(svc)
    assert result.returncode == 1 and "no_such_settings" in result.stderr
    assert old <= set(svc.worker_pids())
    created = web.post("/orders", {"note": "old workers"}).json()
    wait_for(lambda: fulfilled(created["order"]), 15, what="the order fulfilled by the old workers")
