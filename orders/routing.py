"""WebSocket routes of the orders app: the ws-gateway ingest endpoint."""

from django.urls import path

from orders.consumers import GatewayConsumer

websocket_urlpatterns = [path("ws/gateway/", GatewayConsumer.as_asgi())]
