from django.contrib import admin
from django.urls import include, path

from ordermanager.core.login_throttle import throttled_login
from ordermanager.dashboard import views as dashboard
from ordermanager.ops import health
from ordermanager.ops.metrics_view import MetricsView

urlpatterns = [
    path("api/", include("ordermanager.ops.api.urls")),
    # Before admin.site.urls so the admin's catch-all does not take these paths.
    path("admin/dashboard/", admin.site.admin_view(dashboard.dashboard_view), name="admin-dashboard"),
    path(
        "admin/dashboard/live/", admin.site.admin_view(dashboard.dashboard_fragment_view), name="admin-dashboard-live"
    ),
    path("admin/login/", throttled_login),  # same URL and name as the admin's; refuses after repeated failures
    path("reports/", include("ordermanager.reports.urls")),
    path("admin/", admin.site.urls),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", MetricsView.as_view(), name="metrics"),
]
