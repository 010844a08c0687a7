from django.contrib import admin
from django.urls import include, path

from ordermanager.core import health

urlpatterns = [
    path("api/", include("ordermanager.api.urls")),
    path("admin/", admin.site.urls),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
]
