"""Django's Tasks framework through mpqueue (issue #28): `@task` functions of
django.tasks (Django >= 6) or the django-tasks backport (Django 4.2 to 5.2),
enqueued by the TASKS backend mpqueue.contrib.django.tasks.MpqueueBackend, run by
a real `mpqueue run` whose workers boot the shop project, their results read back
with get_result. Skipped on Debian 12's Django 3.2, which the backport does not
support (it needs Django >= 4.2)."""
import datetime as dt

import pytest

from mpqueue.core import envelope as jobmod
from tests.support import wait_for

from .conftest import app_service
from .django_project import restore, setup_shop_db

django = pytest.importorskip("django")
if django.VERSION < (6, 0):
    pytest.importorskip("django_tasks", reason="the django-tasks backport (Django 4.2 to 5.2) is not installed: "
                        "on Debian 12's Django 3.2 it can't be (it needs Django >= 4.2)")


@pytest.fixture(scope="module", autouse=True)
def shop_db(tmp_path_factory):
    saved = setup_shop_db(tmp_path_factory)
    yield
    restore(saved)


@pytest.fixture
def shop(service, producer):
    return app_service(service, {"django": "shop.settings"}, ["shop.tasks"], "shop", retries=0).start()


def finished(result):
    def ended():
        result.refresh()
        return result.is_finished and result
    return wait_for(ended, 15, what=f"{result.task.name} finished")


def test_a_task_is_enqueued_run_in_a_worker_and_its_result_read_back(shop, producer):
    from shop import dtasks
    from shop.models import Order
    # When a Django task is enqueued
    result = dtasks.record.enqueue("from django.tasks")
    # Then it waits as an mpqueue job whose id is the result's
    assert result.status == "READY" and result.backend == "default"
    assert producer.broker.find("shop", result.id) is not None
    # And a worker runs it, with the ORM, and get_result reads its return value back
    finished(result)
    assert result.status == "SUCCESSFUL", result.errors
    assert result.return_value["pid"] in shop.worker_pids()
    assert Order.objects.get(id=result.return_value["order"]).note == "from django.tasks"
    again = dtasks.record.get_result(result.id)
    assert (again.status, again.args, again.return_value) == ("SUCCESSFUL", ["from django.tasks"], result.return_value)


def test_failures_context_and_async_tasks_map_to_task_results(shop):
    from shop import dtasks
    failed = finished(dtasks.explode.enqueue())
    assert failed.status == "FAILED"
    assert failed.errors[0].exception_class is ValueError and "boom" in failed.errors[0].traceback
    assert finished(dtasks.which_attempt.enqueue()).return_value == 1
    assert finished(dtasks.add_async.enqueue(2, 3)).return_value == 5


def test_priority_and_run_after_become_the_jobs_priority_and_due_time(shop, producer):
    from django.utils import timezone

    from shop import dtasks
    # Given tasks of priority 0 (the default), 100 and -100, due in a minute
    soon = timezone.now() + dt.timedelta(seconds=60)
    results = [t.using(run_after=soon).enqueue(*args) for t, args in
               ((dtasks.add, (1, 1)), (dtasks.urgent, ("a",)), (dtasks.whenever, ("b",)))]
    # Then each waits as a scheduled job, READY to Django, with the priority mapped onto 0..9
    found = [producer.broker.find("shop", r.id) for r in results]
    assert [f["state"] for f in found] == ["scheduled"] * 3
    assert [jobmod.decode(f["envelope"]).priority for f in found] == [4, 9, 0]
    assert all(abs(f["due_ms"] / 1000 - soon.timestamp()) < 2 for f in found)
    assert dtasks.add.get_result(results[0].id).status == "READY"
    # And one due now runs at once
    assert finished(dtasks.urgent.enqueue("now")).return_value == "now"


def test_an_unknown_result_id_does_not_exist(shop):
    from shop import dtasks
    try:
        from django.tasks.exceptions import TaskResultDoesNotExist
    except ImportError:
        from django_tasks.exceptions import TaskResultDoesNotExist
    with pytest.raises(TaskResultDoesNotExist):
        dtasks.add.get_result("0123456789abcdef")


def test_a_queue_the_backend_does_not_list_is_refused_at_enqueue(shop):
    from shop import dtasks
    try:
        from django.tasks.exceptions import InvalidTask as InvalidTaskError    # its name in Django 6
    except ImportError:
        from django_tasks.exceptions import InvalidTaskError
    with pytest.raises(InvalidTaskError):
        dtasks.add.using(queue_name="elsewhere").enqueue(1, 2)
