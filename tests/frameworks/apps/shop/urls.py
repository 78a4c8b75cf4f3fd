from django.urls import path

from . import views

urlpatterns = [
    path("orders", views.place_order),
    path("orders/naive", views.place_order_naive),
]
