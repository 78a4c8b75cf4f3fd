from django.db import models


class Order(models.Model):
    note = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default="new")
    worker_pid = models.IntegerField(null=True)
