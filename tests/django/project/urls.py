from __future__ import annotations

from django.urls import include, path, re_path

from . import views

api = [
    path("users/<int:pk>/", views.user_detail),
    path("async-users/<int:pk>/", views.async_user_detail),
]

urlpatterns = [
    path("hello/", views.hello),
    path("async-hello/", views.async_hello),
    path("api/", include(api)),
    path("items/", views.ItemView.as_view()),
    path("boom/", views.boom),
    path("async-boom/", views.async_boom),
    path("unavailable/", views.server_error),
    path("missing/", views.missing),
    path("stream/", views.stream),
    path("broken-stream/", views.broken_stream),
    path("async-stream/", views.async_stream),
    path("order/", views.place_order),
    path("async-order/", views.async_place_order),
    path("many/", views.many_spans),
    path("health/", views.health),
    re_path(r"^archive/(?P<year>[0-9]{4})/$", views.archive),
]
