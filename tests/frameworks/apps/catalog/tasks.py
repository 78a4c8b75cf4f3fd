import os

import mpqueue
from shop.models import Order


@mpqueue.task(queue="shop", retries=0)
def stock(note):
    Order.objects.create(note=note, status="stocked", worker_pid=os.getpid())
