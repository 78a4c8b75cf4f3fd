import os

import mpqueue
from asgiref.sync import sync_to_async
from django.db import transaction

from .models import Order


@mpqueue.task(queue="shop", retries=0)
def fulfil(order_id):
    order = Order.objects.get(id=order_id)      # DoesNotExist if it ran before the commit
    order.status = "fulfilled"
    order.worker_pid = os.getpid()
    order.save()


@mpqueue.task(queue="shop", retries=0)
async def fulfil_async(order_id):
    order = await sync_to_async(Order.objects.get)(id=order_id)
    order.status = "fulfilled"
    order.worker_pid = os.getpid()
    await sync_to_async(order.save)()


@mpqueue.task(queue="shop", retries=0)
def record(note):
    Order.objects.create(note=note, status="recorded", worker_pid=os.getpid())


@mpqueue.task(queue="shop", retries=0)
def break_connection():
    """Leaves its connection in a transaction, autocommit off: without a fresh
    connection the next job's writes would never be committed."""
    transaction.set_autocommit(False)
    Order.objects.create(note="never committed")
    raise RuntimeError("left a transaction open")
