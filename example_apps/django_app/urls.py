from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("health/", views.health),
    path("users/<int:pk>/", views.UserView.as_view()),
    path("orders/<int:order_id>/", views.order),
    path("checkout/<int:order_id>/", views.checkout),
    path("report/", views.report),
    path("ticker/", views.ticker),
    path("async/", views.async_hello),
    path("fail/", views.fail),
    path("stock/<str:sku>/", views.stock),
]
