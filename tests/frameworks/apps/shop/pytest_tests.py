# The same with pytest-django: `MPQUEUE_BROKER=sync:// pytest` (DJANGO_SETTINGS_MODULE
# or --ds names the settings).
import pytest

from shop.models import Order


@pytest.mark.django_db
def test_the_order_is_fulfilled_once_its_transaction_commits(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/orders", {"note": "test"})
    assert response.status_code == 201
    assert Order.objects.get(id=response.json()["order"]).status == "fulfilled"
