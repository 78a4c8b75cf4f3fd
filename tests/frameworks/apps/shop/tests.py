# Run with MPQUEUE_BROKER=sync:// in the environment (it wins over the
# settings' MPQUEUE_CONFIG): `MPQUEUE_BROKER=sync:// python manage.py test`.
# Each job runs inline, before push() returns; nothing reaches the broker.
from django.test import TestCase

from .models import Order


class PlaceOrderTests(TestCase):
    def test_the_order_is_fulfilled_once_its_transaction_commits(self):
        # A TestCase never commits: run the on-commit callbacks (the pushes) as if it had.
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post("/orders", {"note": "test"})
        self.assertEqual(response.status_code, 201)
        self.assertEqual(Order.objects.get(id=response.json()["order"]).status, "fulfilled")

    def test_a_declined_payment_pushes_nothing(self):
        with self.captureOnCommitCallbacks(execute=True) as pushes:
            response = self.client.post("/orders", {"note": "test", "declined": "1"})
        self.assertEqual(response.status_code, 402)
        self.assertEqual(pushes, [])
