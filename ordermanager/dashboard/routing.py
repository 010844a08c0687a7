from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from ordermanager.dashboard.consumers import DashboardConsumer

# Session auth (the admin login) and an Origin check: only our own pages may open it.
websocket_urlpatterns = [
    path("ws/dashboard/", AllowedHostsOriginValidator(AuthMiddlewareStack(DashboardConsumer.as_asgi()))),
]
