"""Tasks the tests use to look inside a job (not part of the documented app)."""
from django.db import connection

import mpqueue

from .models import Order


@mpqueue.task(queue="shop", retries=0)
def count_logged_queries():
    Order.objects.count()
    return len(connection.queries_log)


@mpqueue.task(queue="shop", retries=0)
def takes_an_order(order_id, note=""):
    return order_id
