"""The ws-gateway look-alike: subscriptions, and a WebSocket client that pushes private events.

``POST /ws-gateway/api/v1/subscriptions`` registers a callback URL; the simulator then connects
to it (header ``X-API-Key``) and sends each private message as one text frame, after the event
faults of that subscription's sink. Messages wait in a buffer while the connection is down and
are removed only after ``send`` returned, so a reconnect re-sends at most the frame in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

from exchange.simulator.engine import TOPICS, SimEngine, Sink

log = logging.getLogger(__name__)

MAX_BACKOFF = 2.0


class GatewayError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Subscription:
    id: str
    subscriber: str
    topics: list[str]
    callback_url: str
    api_key: str
    loop: asyncio.AbstractEventLoop
    buffer: deque[str] = field(default_factory=deque)
    sink: Sink | None = None
    task: asyncio.Task | None = None
    connected: bool = False
    connects: int = 0
    sent: int = 0
    last_error: str = ""

    def __post_init__(self) -> None:
        self.wake = asyncio.Event()

    def on_message(self, message: dict) -> None:
        # Called under the engine lock, from the loop thread or a test thread.
        self.buffer.append(json.dumps(message, separators=(",", ":")))
        self.loop.call_soon_threadsafe(self.wake.set)

    def describe(self) -> dict:
        return {
            "id": self.id, "subscriber": self.subscriber, "topics": self.topics, "callback_url": self.callback_url,
            "connected": self.connected, "connects": self.connects, "sent": self.sent, "buffered": len(self.buffer),
            "last_error": self.last_error,
        }

    async def run(self) -> None:
        backoff = 0.05
        while True:
            try:
                async with connect(self.callback_url, additional_headers={"X-API-Key": self.api_key},
                                   open_timeout=5, close_timeout=1) as ws:
                    self.connected, self.connects, backoff = True, self.connects + 1, 0.05
                    await self._pump(ws)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any connection problem: back off and reconnect, keep the buffer
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _pump(self, ws) -> None:
        reader = asyncio.create_task(_drain(ws))
        try:
            while True:
                while self.buffer:
                    await ws.send(self.buffer[0])
                    self.buffer.popleft()
                    self.sent += 1
                self.wake.clear()
                if self.buffer:
                    continue
                waiter = asyncio.create_task(self.wake.wait())
                done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    waiter.cancel()
                    raise ConnectionError("callback connection closed")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def _drain(ws) -> None:
    # Read (and ignore) what the receiver sends, so pings and close frames are processed.
    async for _ in ws:
        pass


class GatewayHub:
    def __init__(self, engine: SimEngine, *, api_key: str | None = None) -> None:
        self.engine = engine
        self.api_key = api_key
        self._lock = threading.Lock()
        self.subscriptions: dict[str, Subscription] = {}

    def check_key(self, given: str | None) -> str:
        # Constant-time compare: the answer's timing must not reveal how much of the key matched.
        if not given or (self.api_key is not None and not hmac.compare_digest(given.encode(), self.api_key.encode())):
            raise GatewayError(401, "invalid API key")
        return given

    def register(self, *, api_key: str, body: object, loop: asyncio.AbstractEventLoop) -> Subscription:
        if not isinstance(body, dict):
            raise GatewayError(400, "body must be a JSON object")
        subscriber, topics, url = body.get("subscriber"), body.get("topics"), body.get("callback_url")
        if not isinstance(subscriber, str) or not subscriber:
            raise GatewayError(400, "subscriber is required")
        if not isinstance(topics, list) or not topics or not all(t in TOPICS for t in topics):
            raise GatewayError(400, f"topics must be a non-empty list drawn from {list(TOPICS)}")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise GatewayError(400, "callback_url must be a ws:// or wss:// URL")
        sub = Subscription(uuid.uuid4().hex, subscriber, list(dict.fromkeys(topics)), url, api_key, loop)
        sub.sink = self.engine.add_sink(sub.on_message, topics=sub.topics, name=f"ws:{subscriber}")
        sub.task = loop.create_task(sub.run())
        with self._lock:
            self.subscriptions[sub.id] = sub
        return sub

    def unregister(self, sub_id: str) -> bool:
        with self._lock:
            sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        self._stop(sub)
        return True

    def close_all(self) -> None:
        with self._lock:
            subs, self.subscriptions = list(self.subscriptions.values()), {}
        for sub in subs:
            self._stop(sub)

    def _stop(self, sub: Subscription) -> None:
        if sub.sink is not None:
            self.engine.remove_listener(sub.sink)
        if sub.task is not None and not sub.loop.is_closed():
            sub.loop.call_soon_threadsafe(sub.task.cancel)
