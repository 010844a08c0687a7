"""Live dashboard updates: a browser joins the Channels group "dashboard" and is told when something changed.

Events reach the group from ``ordermanager.events`` (after commit, in batches, as
``{"type": "dashboard.events", "events": [{...}, ...]}``; a process of an earlier release sends one at a time
as ``{"type": "dashboard.event", "event": {...}}``). The consumer forwards only each distinct event name and
symbol of a batch; the page then re-fetches its fragment, so permissions and numbers always come from the
normal view.
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

    async def dashboard_events(self, message):
        changes = dict.fromkeys((e.get("event", ""), e.get("symbol", "")) for e in message.get("events") or [])
        for name, symbol in changes:
            await self.send_json({"op": "changed", "event": name, "symbol": symbol})

    async def dashboard_event(self, message):
        await self.dashboard_events({"events": [message.get("event") or {}]})
