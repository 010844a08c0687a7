"""WebSocket routes (the ws-gateway endpoint and live admin updates are added by their apps)."""

websocket_urlpatterns: list = []
