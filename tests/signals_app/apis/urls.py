"""The project URLconf plus the intake view at /api/signals/ (POST), as the integrated project routes it."""

from django.urls import include, path

from ordermanager.urls import urlpatterns as project

urlpatterns = [path("api/signals/", include("signals_app.urls")), *project]
