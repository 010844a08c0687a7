"""The ws-gateway endpoint (``ws/gateway/``): Bybit private-stream messages in.

ws-gateway holds the Bybit private WebSocket and forwards each message as one
text frame. This consumer only authenticates, parses (``exchange.bybit.events``)
and hands the message to ``orders.services.fills`` in a worker thread.

Group commit (docs/decisions/0419): a connection's frames are applied in arrival order by one
applier task. A frame that arrives while the connection is idle is applied at once (no timer);
frames that arrive while a transaction is running are applied together in the next one
(``private_messages_apply``, at most ``GROUP_MAX`` messages or ``GROUP_MAX_ITEMS`` items). A group
that fails is rolled back and its messages applied one by one, so one bad message cannot take good
ones down. Every reply (an error frame, a pong) leaves in the order of the frames, after what came
before it was committed. Past ``PENDING_MAX`` frames waiting on a connection the socket is not read
(back pressure).

Protocol
- Auth: header ``X-API-Key: <WS_GATEWAY_API_KEY>`` on the upgrade request, or a
  first frame ``{"op": "auth", "api_key": "..."}`` (answered ``{"op": "auth",
  "success": true}``) within ``AUTH_TIMEOUT`` seconds.
- Close codes: 4401 wrong key, 4403 endpoint disabled (no key configured),
  4408 no auth in time, 1009 a frame before authentication larger than
  ``PRE_AUTH_MAX_BYTES`` (refused unparsed). The handshake is always accepted first so the client
  sees the code and reason, not a bare HTTP 403.
- ``{"op": "ping"}`` → ``{"op": "pong"}``. A malformed frame, or a message that
  cannot be applied, is logged (with its raw text) and answered ``{"op": "error",
  "error": "...", "id": <message id or null>}``; the connection stays up. An item
  lacking a field its kind needs (execQty, execPrice, execTime; side for a trade),
  a decimal not in JSON notation, or an id longer than its column refuses the
  whole message, and the error names the item and the field.
- Nothing else is sent: the gateway need not read from the socket. A message's error frame (like any
  reply) follows the replies of the frames before it.
- While a gateway is connected the ``ws_gateway`` heartbeat is renewed every
  ``HEARTBEAT_INTERVAL`` seconds; when the last one leaves it reads down.

Outages (docs/decisions/0414, 0606): a message that cannot be stored because the
database is unreachable is kept in ``GATEWAY_BACKLOG`` (bounded, in order) and
stored when the database returns; past the bound its symbols are marked for a
targeted backfill. A new authenticated connection after one was lost (or the
first one of this process) marks the desk's active symbols for a targeted
backfill: what happened while no connection was up was not delivered.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

import structlog
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from exchange.bybit.events import parse_private_message
from exchange.bybit.types import MalformedPayload
from ordermanager import metrics
from ordermanager.core.services.db_backlog import DB_UNAVAILABLE, WriteBacklog
from ordermanager.core.services.heartbeat import WS_GATEWAY, heartbeat_beat
from orders.reconcile.backfill_marks import ALL_ACTIVE, backfill_mark
from orders.services.fills import (
    FillRefused,
    MessageOutcome,
    message_check,
    private_message_apply,
    private_messages_apply,
)

log = structlog.get_logger(__name__)

CLOSE_BAD_KEY = 4401
CLOSE_DISABLED = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_BIG = 1009
AUTH_TIMEOUT = 10.0
# Before authentication only the auth frame is expected (about 100 bytes): anything larger is
# refused without being parsed, so an unauthenticated peer cannot make us parse megabytes.
PRE_AUTH_MAX_BYTES = 4096
HEARTBEAT_INTERVAL = 15.0
_connected_gateways = 0  # authenticated ws-gateway connections of this process
# A deadlock or a busy SQLite file is transient: the whole message is retried
# (its transaction rolled back, so a retry cannot apply anything twice).
APPLY_ATTEMPTS = 3


GROUP_MAX = 500  # messages per group transaction
GROUP_MAX_ITEMS = 5000  # items (executions, order events) per group: a bound on the transaction's size and locks
PENDING_MAX = 2000  # frames waiting on one connection before the socket is no longer read
_frames_waiting = 0  # frames of this process's connections received and not yet answered or applied


def frames_waiting() -> int:
    """Frames received on this process's gateway connections and not yet applied (or answered)."""
    return _frames_waiting


def apply_with_retry(message, *, source: str = "ws") -> MessageOutcome:
    """Apply one message on this worker thread's connection, retrying transient failures.

    Not ``database_sync_to_async``: its connection housekeeping arms Django's health check
    before every call, a ``SELECT 1`` round trip per message. The thread keeps its connection
    instead, and a failure that may have broken it (server restart, network) closes it, so
    the retry, or the next message, connects afresh.
    """
    # Every message reaching it (a frame, the backlog's) was checked on receipt (``_message``): not again here.
    return _with_retry(lambda: [private_message_apply(message=message, source=source, checked=True)], [message])[0]


def group_apply_with_retry(messages: list, *, source: str = "ws") -> list[MessageOutcome]:
    """``apply_with_retry`` for a group of messages applied in one transaction (group commit)."""
    # Every frame was checked on receipt (``_message``, ``message_check``) before it was queued: not again here.
    return _with_retry(lambda: private_messages_apply(messages=messages, source=source, checked=True), messages)


def _with_retry(apply, messages: list) -> list[MessageOutcome]:
    for attempt in range(1, APPLY_ATTEMPTS + 1):
        try:
            outcomes = apply()
            for message, outcome in zip(messages, outcomes, strict=True):
                metrics.fills_applied(message, outcome)  # committed: count the new executions and their lag
        except (OperationalError, InterfaceError) as exc:
            connection.close_if_unusable_or_obsolete()
            if attempt == APPLY_ATTEMPTS:
                raise
            log.warning("gateway_message_retry", attempt=attempt, error=str(exc), messages=len(messages),
                        message_id=messages[0].message_id)  # fmt: skip
            time.sleep(0.05 * attempt)
            continue
        except Exception:
            connection.close_if_unusable_or_obsolete()
            raise
        if connection.close_at is not None and time.monotonic() >= connection.close_at:
            connection.close()  # CONN_MAX_AGE still applies, checked without a round trip
        return outcomes
    raise AssertionError("unreachable")


def _message_symbols(message) -> list[tuple[str, str]]:
    return sorted({(i.category, i.symbol) for i in message.items if getattr(i, "symbol", "")})


def _mark_symbols(symbols, reason: str) -> None:
    backfill_mark(symbols, reason=reason)


GATEWAY_BACKLOG: WriteBacklog = WriteBacklog(
    "ws-gateway",
    write=apply_with_retry,
    symbols_of=_message_symbols,
    describe=lambda m: {"message_id": m.message_id, "topic": m.topic, "items": len(m.items)},
    mark=_mark_symbols,
    # The fills it holds are missing from the book; consumers see the mark and read the exchange (0316).
    mark_on_drain="ws-gateway messages kept during a database outage",
)


def gateway_message_store(message) -> MessageOutcome | None:
    """Apply a message, or keep it while the database is unreachable (None: kept or, past the bound,
    its symbols marked for backfill). Any other failure propagates to the caller."""
    if GATEWAY_BACKLOG.pending:
        GATEWAY_BACKLOG.keep(message, error="earlier messages are waiting for the database")
        return None
    try:
        return apply_with_retry(message)
    except DB_UNAVAILABLE as exc:
        GATEWAY_BACKLOG.keep(message, error=str(exc))
        return None


def gateway_messages_store(messages: list) -> list[MessageOutcome | Exception | None]:
    """Store a connection's waiting messages, in order; each one's result in its place: its outcome
    (committed), None (kept for the database, 0414) or the exception that refused it.

    More than one: one transaction for all (group commit). If the group fails for any reason but the
    database being unreachable, it was rolled back whole and its messages are applied one by one, each
    all or nothing as alone. Never raises."""
    if len(messages) > 1 and not GATEWAY_BACKLOG.pending:
        try:
            return group_apply_with_retry(messages)
        except DB_UNAVAILABLE as exc:
            # As for one message (0414): kept in order, written when the database answers.
            for message in messages:
                GATEWAY_BACKLOG.keep(message, error=str(exc))
            return [None] * len(messages)
        except Exception as exc:
            log.warning("gateway_group_failed", messages=len(messages), error=f"{exc.__class__.__name__}: {exc}",
                        detail="rolled back; its messages are applied one by one")  # fmt: skip
    return [_store_one(m) for m in messages]


def _store_one(message) -> MessageOutcome | Exception | None:
    try:
        return gateway_message_store(message)
    except Exception as exc:
        return exc


class _Connections:
    """Authenticated gateway connections of this process: a new one after a loss (or the first one)
    means private events may have gone undelivered."""

    def __init__(self):
        self.lock = threading.Lock()
        self.open = 0
        self.ever = False
        self.lost = False

    def connected(self) -> str | None:
        with self.lock:
            reason = None
            if not self.ever:
                reason = "first ws-gateway connection of this process: events sent before it were not received"
            elif self.lost:
                reason = "ws-gateway reconnected after a lost connection"
            self.open += 1
            self.ever = True
            self.lost = False
            return reason

    def disconnected(self) -> None:
        with self.lock:
            self.open = max(0, self.open - 1)
            self.lost = True


CONNECTIONS = _Connections()


def gateway_connected_backfill(reason: str) -> None:
    """Mark every active symbol (resolved when the pass runs) for a targeted backfill."""
    log.warning("gateway_backfill_requested", reason=reason)
    GATEWAY_BACKLOG.mark([("", ALL_ACTIVE)], reason)


@dataclass(slots=True)
class _Frame:
    """A frame waiting for the connection's applier: a message to apply, or a reply to send in turn."""

    message: object | None = None  # a parsed PrivateMessage
    message_id: object = None
    raw: object = None
    reply: str | None = None


class GatewayConsumer(AsyncWebsocketConsumer):
    # ws-gateway only pushes to us; nothing is ever sent to this connection through
    # the channel layer. An alias that names no layer makes Channels skip the
    # per-connection receive loop (a BRPOP per connection on channels-redis).
    channel_layer_alias = "ws-gateway-needs-no-channel-layer"
    authenticated = False
    _auth_timer: asyncio.TimerHandle | None = None
    _applier: asyncio.Future | None = None

    async def dispatch(self, message):
        # Channels runs close_old_connections on its one thread-sensitive thread before every frame: a thread
        # hop per frame, for a connection this consumer never uses (messages are applied on worker threads
        # that manage their own, see apply_with_retry). Connect and disconnect keep it.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def connect(self):
        self._pending: deque[_Frame] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # nothing waiting and nothing being applied
        self._drained.set()
        self._room = asyncio.Event()  # fewer than PENDING_MAX frames waiting
        self._room.set()
        await self.accept()
        expected = settings.WS_GATEWAY_API_KEY
        if not expected:
            await self._refuse(CLOSE_DISABLED, "ws-gateway endpoint disabled: WS_GATEWAY_API_KEY is not set")
            return
        offered = _header(self.scope, b"x-api-key")
        if offered is None:
            self._auth_timer = asyncio.get_running_loop().call_later(
                AUTH_TIMEOUT, lambda: asyncio.ensure_future(self._auth_timeout())
            )
        elif _key_ok(offered, expected):
            self.authenticated = True
            log.info("gateway_connected", client=_client(self.scope), auth="header")
            self._link_up()
            await self._connected()
        else:
            await self._refuse(CLOSE_BAD_KEY, "invalid API key")

    async def disconnect(self, code):
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        if self._applier is not None:
            # Frames received before the close are applied (and counted) before the connection is let go.
            await self._drained.wait()
            self._applier.cancel()
        if self.authenticated:
            CONNECTIONS.disconnected()
            log.info("gateway_disconnected", client=_client(self.scope), code=code)
            await self._link_down(code)

    async def _connected(self) -> None:
        reason = CONNECTIONS.connected()
        if reason:
            await sync_to_async(gateway_connected_backfill, thread_sensitive=False)(reason)

    async def receive(self, text_data=None, bytes_data=None):
        raw = text_data if text_data is not None else bytes_data
        if not self.authenticated and len(raw or "") > PRE_AUTH_MAX_BYTES:
            await self._refuse(CLOSE_TOO_BIG, f"frame before authentication exceeds {PRE_AUTH_MAX_BYTES} bytes")
            return
        try:
            # Text frames are read once, decimals straight from their text (parse_float=Decimal), and the
            # object is what the parser gets; bytes are read as before (the parser decodes them as UTF-8 only).
            frame = json.loads(raw, parse_float=Decimal) if isinstance(raw, str) else json.loads(raw)
        except (TypeError, ValueError, UnicodeDecodeError):
            await self._error("frame is not valid JSON")
            return
        if not isinstance(frame, dict):
            await self._error("frame must be a JSON object")
            return
        if not self.authenticated:
            await self._authenticate(frame)
            return
        op = frame.get("op")
        if op == "ping":
            await self._reply({"op": "pong", "req_id": _echoed(frame.get("req_id"))})
        elif op == "auth":
            await self._reply({"op": "auth", "success": True})
        elif op is not None:
            await self._error(f"unknown op {op!r}")
        else:
            await self._message(raw, frame)

    async def _message(self, raw, frame: dict) -> None:
        message_id = _echoed(frame.get("id"))
        try:
            # Decimals must come from text: a text frame's object was read with parse_float=Decimal; bytes are
            # parsed again from the raw frame.
            message = parse_private_message(frame if isinstance(raw, str) else raw)
        except MalformedPayload as exc:
            log.warning("gateway_malformed_message", error=str(exc), message_id=message_id, raw=_clip(raw))
            await self._error(str(exc), message_id=message_id)
            return
        try:
            # Checked here (no database) before anything else happens to the message; the apply checks again.
            message_check(message)
        except FillRefused as exc:  # an item that cannot be stored as it is: nothing of the message is applied
            log.warning("gateway_message_refused", error=str(exc), message_id=message_id, raw=_clip(raw))
            await self._error(str(exc), message_id=message_id)
            return
        await self._enqueue(_Frame(message=message, message_id=message_id, raw=raw))

    # --- the applier: a connection's frames in order, in groups -------------------------------------------

    async def _enqueue(self, item: _Frame) -> None:
        global _frames_waiting
        await self._room.wait()  # back pressure: while PENDING_MAX frames wait, this connection is not read
        self._pending.append(item)
        _frames_waiting += 1
        if len(self._pending) >= PENDING_MAX:
            self._room.clear()
        self._drained.clear()
        if self._applier is None:
            self._applier = asyncio.ensure_future(self._apply_loop())
        self._wake.set()

    async def _apply_loop(self) -> None:
        global _frames_waiting
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                group: list[_Frame] = []
                messages = []
                items = 0
                while self._pending and len(messages) < GROUP_MAX and items < GROUP_MAX_ITEMS:
                    item = self._pending.popleft()
                    group.append(item)
                    if item.message is not None:
                        messages.append(item.message)
                        items += len(item.message.items)
                results: list = []
                if messages:
                    try:
                        results = await sync_to_async(gateway_messages_store, thread_sensitive=False)(messages)
                    except Exception as exc:  # not expected (the store answers per message); never stop the loop
                        log.exception("gateway_group_store_failed", messages=len(messages))
                        results = [exc] * len(messages)
                answers = iter(results)
                for item in group:
                    try:
                        if item.message is None:
                            await self._send_text(item.reply)
                        else:
                            await self._answer(item, next(answers))
                    except Exception:  # a reply that cannot be made must not stop the frames after it
                        log.exception("gateway_answer_failed", message_id=item.message_id)
                _frames_waiting -= len(group)
                if len(self._pending) < PENDING_MAX:
                    self._room.set()
            self._drained.set()

    async def _answer(self, item: _Frame, result) -> None:
        """The reply a message gets once its group is settled: nothing when stored (or kept), else an error."""
        message, message_id = item.message, item.message_id
        if isinstance(result, MessageOutcome):
            log.debug("gateway_message", topic=result.topic, applied=result.applied, ignored=result.ignored)
        elif isinstance(result, FillRefused):  # an item that cannot be stored as it is: nothing of it was applied
            log.warning("gateway_message_refused", error=str(result), message_id=message_id, raw=_clip(item.raw))
            await self._send_text(json.dumps({"op": "error", "error": str(result), "id": message_id}))
        elif isinstance(result, Exception):  # one bad message must not take the feed down; REST backfill recovers it
            log.error("gateway_message_failed", message_id=message_id, topic=message.topic, raw=_clip(item.raw),
                      exc_info=result)  # fmt: skip
            # A gap in what we stored: the symbols get a targeted backfill from the exchange.
            try:
                await sync_to_async(GATEWAY_BACKLOG.mark, thread_sensitive=False)(
                    _message_symbols(message), f"a {message.topic} message could not be applied"
                )
            except Exception:
                log.exception("gateway_backfill_mark_failed", message_id=message_id)
            error = f"could not apply {message.topic} message: {result.__class__.__name__}"
            await self._send_text(json.dumps({"op": "error", "error": error, "id": message_id}))

    async def _reply(self, reply: dict) -> None:
        """Send now when nothing waits before it; else after the frames before it are settled."""
        text = json.dumps(reply)
        if self._drained.is_set():
            await self.send(text_data=text)
        else:
            await self._enqueue(_Frame(reply=text))

    async def _send_text(self, text: str) -> None:
        try:
            await self.send(text_data=text)
        except Exception as exc:  # the peer went away; what was applied stays applied
            log.info("gateway_reply_not_sent", error=str(exc))

    async def _authenticate(self, frame: dict) -> None:
        if frame.get("op") != "auth":
            await self._refuse(CLOSE_BAD_KEY, 'authenticate first: {"op": "auth", "api_key": "..."}')
            return
        offered = frame.get("api_key")
        if not isinstance(offered, str) or not _key_ok(offered, settings.WS_GATEWAY_API_KEY):
            await self._refuse(CLOSE_BAD_KEY, "invalid API key")
            return
        self.authenticated = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        log.info("gateway_connected", client=_client(self.scope), auth="frame")
        self._link_up()
        await self.send(text_data=json.dumps({"op": "auth", "success": True}))
        await self._connected()

    def _link_up(self) -> None:
        global _connected_gateways
        _connected_gateways += 1
        metrics.gateway_connection_opened()
        self._beats = asyncio.ensure_future(self._beat_while_connected())

    async def _beat_while_connected(self) -> None:
        while True:
            await gateway_heartbeat(ok=True, detail=f"connected: {_client(self.scope)}")
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _link_down(self, code) -> None:
        global _connected_gateways
        _connected_gateways -= 1
        metrics.gateway_connection_closed()
        beats = getattr(self, "_beats", None)
        if beats is not None:
            beats.cancel()
        if _connected_gateways <= 0:
            await gateway_heartbeat(ok=False, detail=f"ws-gateway disconnected (close code {code})")

    async def _auth_timeout(self) -> None:
        if not self.authenticated:
            await self._refuse(CLOSE_AUTH_TIMEOUT, f"no auth within {AUTH_TIMEOUT:g}s")

    async def _refuse(self, code: int, reason: str) -> None:
        log.warning("gateway_refused", code=code, reason=reason, client=_client(self.scope))
        await self._error(reason)
        await self.close(code=code, reason=reason)

    async def _error(self, error: str, *, message_id=None) -> None:
        await self._reply({"op": "error", "error": error, "id": message_id})


async def gateway_heartbeat(*, ok: bool, detail: str) -> None:
    """Record the link's state for the dashboard and /api/health/ (a failure must not drop the link)."""
    try:
        await sync_to_async(_beat_and_release, thread_sensitive=False)(ok, detail)
    except Exception:
        log.exception("gateway_heartbeat_failed")


def _beat_and_release(ok: bool, detail: str) -> None:
    try:
        heartbeat_beat(component=WS_GATEWAY, ok=ok, detail=detail)
    finally:
        connection.close()


def _echoed(value):
    """An id as the peer sent it, for a reply: a JSON number with a fraction was read as Decimal."""
    return float(value) if isinstance(value, Decimal) else value


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _key_ok(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode(), expected.encode())


def _client(scope) -> str:
    client = scope.get("client") or ("?", 0)
    return f"{client[0]}:{client[1]}"


def _clip(raw, limit: int = 2000) -> str:
    text = raw if isinstance(raw, str) else bytes(raw or b"").decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"
