"""Django users' ways in (issue #28): workers autodiscover each installed app's
`tasks` module (MPQUEUE_AUTODISCOVER, Celery's autodiscover_tasks), and
`manage.py mpqueue run|check|status` runs mpqueue's own commands for the service
the MPQUEUE_CONFIG setting names. On the newest Django and Debian 12's 3.2."""
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.support import wait_for

from .conftest import APPS, app_service
from .django_project import restore, setup_shop_db

django = pytest.importorskip("django")


@pytest.fixture(scope="module", autouse=True)
def shop_db(tmp_path_factory):
    saved = setup_shop_db(tmp_path_factory)
    yield
    restore(saved)


def shop(service, **settings):
    return app_service(service, {"django": "shop.settings"}, ["shop.tasks"], "shop", retries=0, **settings)


def stocked(note):
    from shop.models import Order
    return Order.objects.filter(note=note, status="stocked").first()


def manage(*args, config=None, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(APPS), "DJANGO_SETTINGS_MODULE": "shop.settings"}
    env.pop("MPQUEUE_BROKER", None)
    env.pop("MPQUEUE_CONFIG", None)
    env.pop("SHOP_MPQUEUE_CONFIG", None)
    if config:
        env["SHOP_MPQUEUE_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "django", "mpqueue", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_workers_find_a_tasks_module_no_imports_list_names(service, producer):
    # Given a service whose imports list only shop.tasks, and catalog, an installed app
    # with a tasks module of its own (MPQUEUE_AUTODISCOVER = True in the settings)
    shop(service).start()
    # When one of catalog's tasks is pushed
    job = producer.push("shop", "catalog.tasks:stock", ["autodiscovered"])
    # Then a worker runs it: it was registered at boot
    wait_for(lambda: stocked("autodiscovered"), 15, what="catalog's task run")
    wait_for(lambda: producer.broker.find("shop", job)["state"] == "done", 10, what="the job done")


def test_manage_py_mpqueue_check_and_status_use_the_settings_service(service, producer):
    svc = shop(service).start()
    out = manage("check", config=svc.config_path)
    assert out.returncode == 0 and ": ok: service svc" in out.stdout, out.stderr
    out = manage("status", "--json", config=svc.config_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["queues"]["shop"]["served"] is True


def test_manage_py_mpqueue_says_in_one_line_what_is_missing(tmp_path):
    out = manage("check")
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "CommandError: no service: set MPQUEUE_CONFIG (the service's YAML path) in the settings, "
        "or pass --config FILE"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("queues: {shop: {workers: many}}\n")
    out = manage("check", "--config", str(bad))
    assert out.returncode == 78 and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_manage_py_mpqueue_run_serves_the_queue(service, producer):
    svc = shop(service)            # its YAML, not started: manage.py runs it
    env = {**os.environ, "PYTHONPATH": str(APPS), "DJANGO_SETTINGS_MODULE": "shop.settings",
           "SHOP_MPQUEUE_CONFIG": str(svc.config_path), "MPQUEUE_RUNTIME_DIR": str(svc.tmp / "run")}
    for key in ("MPQUEUE_BROKER", "MPQUEUE_CONFIG", "NOTIFY_SOCKET"):
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "-m", "django", "mpqueue", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        producer.push("shop", "catalog.tasks:stock", ["via manage.py"])
        wait_for(lambda: stocked("via manage.py"), 30, what="the job run by manage.py mpqueue run")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
