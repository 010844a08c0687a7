"""WebSocket routes (the ws-gateway endpoint and live admin updates are added by their apps)."""

from orders.routing import websocket_urlpatterns as orders_websocket_urlpatterns

websocket_urlpatterns: list = []
websocket_urlpatterns += orders_websocket_urlpatterns

from ordermanager.dashboard.routing import websocket_urlpatterns as dashboard_websocket_urlpatterns  # noqa: E402

websocket_urlpatterns += dashboard_websocket_urlpatterns
