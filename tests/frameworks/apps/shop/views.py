import time

from django.db import transaction
from django.http import JsonResponse

from mpqueue.contrib.django import push_on_commit

from .models import Order
from .tasks import fulfil


class Declined(Exception):
    pass


def place_order(request):
    try:
        with transaction.atomic():
            order = Order.objects.create(note=request.POST["note"])
            # Pushed when the transaction commits: never for a rolled-back order.
            job_id = push_on_commit(fulfil, order.id)
            time.sleep(float(request.POST.get("pause", 0)))     # the tests' slow payment provider
            if request.POST.get("declined"):
                raise Declined()
    except Declined:
        return JsonResponse({"error": "payment declined"}, status=402)
    return JsonResponse({"order": order.id, "job": job_id}, status=201)


def place_order_naive(request):
    """The mistake push_on_commit avoids (the tests' control): the job is pushed
    inside the transaction, so a worker may look for the row before it exists."""
    with transaction.atomic():
        order = Order.objects.create(note=request.POST["note"])
        job_id = fulfil.push(order.id)
        time.sleep(float(request.POST.get("pause", 0)))
    return JsonResponse({"order": order.id, "job": job_id}, status=201)
