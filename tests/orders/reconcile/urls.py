"""The project's URLs plus POST /api/reconcile/, until the integrator adds its line to ordermanager/api/urls.py."""

from django.urls import include, path

from ordermanager.urls import urlpatterns as project_urlpatterns
from orders.apis_reconcile import urlpatterns as reconcile_urlpatterns

urlpatterns = [path("api/", include((reconcile_urlpatterns, "reconcile"))), *project_urlpatterns]
