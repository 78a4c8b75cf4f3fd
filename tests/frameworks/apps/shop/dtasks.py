"""Tasks written for Django's Tasks framework (django.tasks on Django >= 6, the
django-tasks backport before), run by mpqueue's workers through the TASKS backend."""
import os

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from .models import Order


@task(queue_name="shop")
def add(a, b):
    return a + b


@task(queue_name="shop")
def record(note):
    order = Order.objects.create(note=note, status="recorded", worker_pid=os.getpid())
    return {"order": order.id, "pid": os.getpid()}


@task(queue_name="shop", takes_context=True)
def which_attempt(context):
    return context.attempt


@task(queue_name="shop")
def explode():
    raise ValueError("boom")


@task(queue_name="shop")
async def add_async(a, b):
    return a + b


@task(queue_name="shop", priority=100)
def urgent(note):
    return note


@task(queue_name="shop", priority=-100)
def whenever(note):
    return note
