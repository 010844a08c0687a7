"""Mounted at /api/signals/ (POST: intake). The GET list on the same path is the back office's
(ordermanager/api/signals.py); the project URLconf routes each method to its view."""

from django.urls import path

from signals_app.apis import SignalCreateApi

app_name = "signals"

urlpatterns = [path("", SignalCreateApi.as_view(), name="signal-create")]
