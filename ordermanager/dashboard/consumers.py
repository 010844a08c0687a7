"""Live dashboard updates: a browser joins the Channels group "dashboard" and is told when something changed.

Events reach the group from ``ordermanager.events`` (after commit, as
``{"type": "dashboard.event", "event": {...}}``). The consumer forwards only the
event name and symbol; the page then re-fetches its fragment, so permissions
and numbers always come from the normal view.
"""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

GROUP = "dashboard"
CLOSE_FORBIDDEN = 4403


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def dashboard_event(self, message):
        event = message.get("event") or {}
        await self.send_json({"op": "changed", "event": event.get("event", ""), "symbol": event.get("symbol", "")})
