"""The ws-gateway endpoint in process (Channels communicator): auth, close codes, error frames, ingest."""

import asyncio
import json
from decimal import Decimal as D
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.routing import URLRouter

from orders import consumers
from orders.models import Execution
from orders.routing import websocket_urlpatterns
from positions.models import Position
from tests.orders.factories import OrderFactory
from tests.positions import bybit_messages as bm

KEY = "gateway-test-key"
APP = URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
def _key(settings):
    settings.WS_GATEWAY_API_KEY = KEY


@pytest.fixture(autouse=True)
def beats(request, monkeypatch):
    """The link heartbeats of a test, recorded instead of written (from another thread they would outlive
    a test's transaction); tests marked ``real_heartbeat`` write them to the database."""
    recorded: list[tuple[bool, str]] = []
    if "real_heartbeat" not in request.fixturenames:

        async def record(*, ok, detail):
            recorded.append((ok, detail))

        monkeypatch.setattr(consumers, "gateway_heartbeat", record)
    return recorded


@pytest.fixture
def real_heartbeat():
    """Marker fixture: this test's gateway heartbeats go to the database."""


# Every test here is transactional: the consumer writes (heartbeat, backfill marks) from its own thread, which on
# SQLite would wait for the test's open write transaction (PostgreSQL would not mind).
def run(scenario):
    return asyncio.run(asyncio.wait_for(scenario(), timeout=20))


class Communicator(ApplicationCommunicator):
    """A WebSocket client speaking ASGI to the app (channels.testing needs daphne, which we do not install)."""

    def __init__(self, headers: list):
        scope = {"type": "websocket", "path": "/ws/gateway/", "query_string": b"", "headers": headers,
                 "subprotocols": []}  # fmt: skip
        super().__init__(APP, scope)

    async def connect(self) -> tuple[bool, None]:
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(10)
        return response["type"] == "websocket.accept", None

    async def send_to(self, text_data: str) -> None:
        await self.send_input({"type": "websocket.receive", "text": text_data})

    async def send_json_to(self, data) -> None:
        await self.send_to(json.dumps(data))

    async def receive_json_from(self) -> dict:
        response = await self.receive_output(10)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.wait(10)


def communicator(key: str | None = KEY) -> Communicator:
    return Communicator([(b"x-api-key", key.encode())] if key is not None else [])


async def _closed_with(ws: Communicator) -> tuple[dict, int]:
    error = await ws.receive_json_from()
    close = await ws.receive_output(10)
    assert close["type"] == "websocket.close"
    return error, close["code"]


# Channels closes stale DB connections around every frame, so even auth-only tests touch the DB layer.
@pytest.mark.django_db(transaction=True)
def test_header_key_authenticates_and_ping_is_answered():
    async def scenario():
        ws = communicator()
        connected, _ = await ws.connect()
        await ws.send_json_to({"op": "ping", "req_id": "7"})
        reply = await ws.receive_json_from()
        await ws.disconnect()
        return connected, reply

    connected, reply = run(scenario)
    assert connected and reply == {"op": "pong", "req_id": "7"}


# Channels closes stale DB connections around every frame, so even auth-only tests touch the DB layer.
@pytest.mark.django_db(transaction=True)
def test_wrong_header_key_closes_4401():
    async def scenario():
        ws = communicator("nope")
        await ws.connect()
        return await _closed_with(ws)

    error, code = run(scenario)
    assert code == consumers.CLOSE_BAD_KEY == 4401
    assert error == {"op": "error", "error": "invalid API key", "id": None}


# Channels closes stale DB connections around every frame, so even auth-only tests touch the DB layer.
@pytest.mark.django_db(transaction=True)
def test_first_frame_auth():
    async def scenario():
        good = communicator(None)
        await good.connect()
        await good.send_json_to({"op": "auth", "api_key": KEY})
        accepted = await good.receive_json_from()
        await good.disconnect()
        bad = communicator(None)
        await bad.connect()
        await bad.send_json_to({"op": "auth", "api_key": "guess"})
        return accepted, await _closed_with(bad)

    accepted, (error, code) = run(scenario)
    assert accepted == {"op": "auth", "success": True}
    assert code == 4401 and error["error"] == "invalid API key"


# Channels closes stale DB connections around every frame, so even auth-only tests touch the DB layer.
@pytest.mark.django_db(transaction=True)
def test_data_before_auth_is_refused():
    async def scenario():
        ws = communicator(None)
        await ws.connect()
        await ws.send_json_to(bm.message("execution", [bm.execution_item()]))
        return await _closed_with(ws)

    error, code = run(scenario)
    assert code == 4401 and "authenticate first" in error["error"]


# Channels closes stale DB connections around every frame, so even auth-only tests touch the DB layer.
@pytest.mark.django_db(transaction=True)
def test_no_auth_in_time_closes_4408(monkeypatch):
    monkeypatch.setattr(consumers, "AUTH_TIMEOUT", 0.05)

    async def scenario():
        ws = communicator(None)
        await ws.connect()
        return await _closed_with(ws)

    error, code = run(scenario)
    assert code == consumers.CLOSE_AUTH_TIMEOUT == 4408


# Channels closes stale DB connections around every frame, so even auth-only tests touch the DB layer.
@pytest.mark.django_db(transaction=True)
def test_endpoint_without_configured_key_closes_4403(settings):
    settings.WS_GATEWAY_API_KEY = ""

    async def scenario():
        ws = communicator("anything")
        await ws.connect()
        return await _closed_with(ws)

    error, code = run(scenario)
    assert code == 4403 and "WS_GATEWAY_API_KEY" in error["error"]


@pytest.mark.django_db(transaction=True)
def test_malformed_frames_get_error_frames_and_the_connection_stays_up():
    bad_decimal = bm.message("execution", [{**bm.execution_item(), "execQty": "1.2.3"}])

    async def scenario():
        ws = communicator()
        await ws.connect()
        replies = []
        for frame in ("not json", "[1, 2]", json.dumps({"op": "subscribe"}),
                      json.dumps({"id": "m1", "topic": "orderbook.50.BTCUSDT", "data": []}),
                      json.dumps(bad_decimal)):  # fmt: skip
            await ws.send_to(frame)
            replies.append(await ws.receive_json_from())
        await ws.send_json_to({"op": "ping"})
        replies.append(await ws.receive_json_from())
        await ws.disconnect()
        return replies

    replies = run(scenario)
    assert [r["op"] for r in replies] == ["error"] * 5 + ["pong"]
    assert replies[0]["error"] == "frame is not valid JSON"
    assert replies[2]["error"] == "unknown op 'subscribe'"
    assert replies[3] == {"op": "error", "error": "unknown topic 'orderbook.50.BTCUSDT'; expected one of "
                          "order, execution, position, wallet", "id": "m1"}  # fmt: skip
    assert "data[0]: execQty: '1.2.3' is not a decimal number" in replies[4]["error"]
    assert replies[4]["id"] == bad_decimal["id"]
    assert not Execution.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_execution_message_is_applied_and_a_failing_one_answers_an_error():
    order = OrderFactory(qty=D("0.5"), price=D("100"))
    good = bm.message("execution", [bm.execution_item(qty="0.5", price="100", fee="0.03",
                                                      order_link_id=order.order_link_id)])  # fmt: skip
    failing = bm.message("execution", [bm.execution_item(qty="-1", price="100")])  # check constraint

    async def scenario():
        ws = communicator()
        await ws.connect()
        await ws.send_json_to(good)
        await ws.send_json_to(failing)
        error = await ws.receive_json_from()
        await ws.send_json_to({"op": "ping"})
        pong = await ws.receive_json_from()
        await ws.disconnect()
        return error, pong

    error, pong = run(scenario)
    assert error == {"op": "error", "error": "could not apply execution message: IntegrityError", "id": failing["id"]}
    assert pong["op"] == "pong"
    position = Position.objects.get(symbol="BTCUSDT")
    assert (position.size, position.avg_entry_price, position.fees_paid) == (D("0.5"), D("100"), D("0.03"))
    assert Execution.objects.count() == 1


def _in_thread(fn):
    """Run ``fn`` on its own database connection (closed after), as a server thread would."""
    from django.db import connection

    def run_closed():
        try:
            return fn()
        finally:
            connection.close()

    return asyncio.to_thread(run_closed)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_messages_from_several_connections_are_applied_concurrently():
    """A message stuck behind a row lock on one connection does not hold up another connection's."""
    from positions.models import PositionLedgerEntry

    btc, eth = OrderFactory(symbol="BTCUSDT", qty=D("1")), OrderFactory(symbol="ETHUSDT", qty=D("1"))
    holder, release = _held_position("BTCUSDT")
    btc_fill = bm.message(
        "execution", [bm.execution_item(symbol="BTCUSDT", qty="0.5", order_link_id=btc.order_link_id)]
    )
    eth_fill = bm.message(
        "execution", [bm.execution_item(symbol="ETHUSDT", qty="0.5", order_link_id=eth.order_link_id)]
    )

    def applied(symbol):
        return PositionLedgerEntry.objects.filter(position__symbol=symbol).exists()

    async def scenario():
        a, b = communicator(), communicator()
        await a.connect()
        await b.connect()
        await a.send_json_to(btc_fill)  # waits for the BTCUSDT row lock
        await b.send_json_to(eth_fill)
        deadline = asyncio.get_running_loop().time() + 10
        while not await _in_thread(lambda: applied("ETHUSDT")):
            assert asyncio.get_running_loop().time() < deadline, "ETHUSDT waited for the other connection"
            await asyncio.sleep(0.02)
        btc_meanwhile = await _in_thread(lambda: applied("BTCUSDT"))
        release.set()
        await a.send_json_to({"op": "ping"})
        pong = await a.receive_json_from()  # after the BTCUSDT message (frames of a connection in order)
        await a.disconnect()
        await b.disconnect()
        return btc_meanwhile, pong

    try:
        btc_meanwhile, pong = run(scenario)
    finally:
        release.set()
        holder.join(10)
    assert btc_meanwhile is False and pong["op"] == "pong"
    assert Position.objects.get(symbol="BTCUSDT").size == Position.objects.get(symbol="ETHUSDT").size == D("0.5")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_between_messages_is_replaced_by_the_retry():
    """Worker threads keep their connection (no per-message health check): a dead one is reopened."""
    import psycopg
    from django.db import connection

    from exchange.bybit.events import parse_private_message

    order = OrderFactory(qty=D("1"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    message = parse_private_message(bm.message("execution", [bm.execution_item(order_link_id=order.order_link_id)]))

    outcome = consumers.apply_with_retry(message)

    assert outcome.applied == 1 and Execution.objects.count() == 1


async def _answers(frames: list[dict], *, expect: int) -> list[dict]:
    """Send frames, then a ping; the replies before the pong (error frames) and the pong."""
    ws = communicator()
    await ws.connect()
    for frame in frames:
        await ws.send_json_to(frame)
    await ws.send_json_to({"op": "ping"})
    replies = [await ws.receive_json_from() for _ in range(expect + 1)]
    await ws.disconnect()
    return replies


def _logged(caplog, event: str) -> list[dict]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == event]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("field", ["execQty", "execPrice", "execTime", "side"])
def test_an_execution_missing_a_field_its_kind_needs_gets_an_error_naming_it_and_nothing_applied(field, caplog):
    order = OrderFactory(qty=D("1"), price=D("100"))
    good = bm.execution_item(qty="0.5", price="100", order_link_id=order.order_link_id)
    bad = bm.execution_item(qty="0.5", price="100", order_link_id=order.order_link_id)
    del bad[field]
    message = bm.message("execution", [good, bad])

    error, pong = run(lambda: _answers([message], expect=1))

    assert pong["op"] == "pong" and error["op"] == "error" and error["id"] == message["id"]
    if field == "side":
        assert error["error"] == (
            f"execution message: data[1] (execId {bad['execId']!r}): side is missing: a Trade "
            "execution needs it to move the position; nothing of the message applied"
        )
    else:
        assert error["error"] == f"execution message: data[1]: {field} is missing"
    assert not Execution.objects.exists() and not Position.objects.filter(size__gt=0).exists()
    logged = _logged(caplog, "gateway_message_refused" if field == "side" else "gateway_malformed_message")
    assert len(logged) == 1 and bad["execId"] in logged[0]["raw"] and logged[0]["message_id"] == message["id"]


@pytest.mark.postgres  # 18 decimal places are stored exactly there; the embedded SQLite keeps ~15 significant digits
@pytest.mark.django_db(transaction=True)
def test_a_frame_read_once_keeps_decimals_exact_and_echoes_numeric_ids_as_sent():
    # The consumer reads a text frame once (decimals from their text) and hands the object to the parser.
    order = OrderFactory(qty=D("1"), price=D("100"))
    item = bm.execution_item(qty="0.5", price="100", order_link_id=order.order_link_id)
    raw = json.dumps(bm.message("execution", [item])).replace('"0.5"', "0.123456789012345678")
    bad = {**bm.message("execution", [{**item, "execId": "other", "execQty": "1.5x"}]), "id": 1.5}

    async def scenario():
        ws = communicator()
        await ws.connect()
        await ws.send_to(text_data=raw)
        await ws.send_json_to(bad)
        await ws.send_json_to({"op": "ping", "req_id": 2.25})
        replies = [await ws.receive_json_from() for _ in range(2)]
        await ws.disconnect()
        return replies

    error, pong = run(scenario)

    assert error["op"] == "error" and error["id"] == 1.5 and "execQty" in error["error"]
    assert pong == {"op": "pong", "req_id": 2.25}
    assert Execution.objects.get().exec_qty == D("0.123456789012345678")


@pytest.mark.django_db(transaction=True)
def test_two_long_exec_ids_sharing_a_prefix_are_both_refused_not_merged(caplog):
    order = OrderFactory(qty=D("1"), price=D("100"))
    messages = [
        bm.message("execution", [bm.execution_item(qty="0.5", price="100", order_link_id=order.order_link_id,
                                                   exec_id="e" * 64 + tail)])  # fmt: skip
        for tail in ("-first", "-second")
    ]

    *errors, pong = run(lambda: _answers(messages, expect=2))

    assert pong["op"] == "pong"
    for error, message, length in zip(errors, messages, (70, 71), strict=True):
        assert error["id"] == message["id"]
        assert f"execId is {length} characters, longer than the 64 we can store" in error["error"]
    assert not Execution.objects.exists()
    assert len(_logged(caplog, "gateway_message_refused")) == 2


@pytest.mark.django_db(transaction=True)
def test_a_gateway_forwarding_only_executions_moves_an_open_one_way_position_at_once():
    Position.objects.create(symbol="BTCUSDT", position_idx=0, size=D("1"), avg_entry_price=D("100"))
    manual = bm.message("execution", [bm.execution_item(order_id="placed-in-the-app", qty="0.4", price="120",
                                                        side="Sell")])  # fmt: skip

    (pong,) = run(lambda: _answers([manual], expect=0))

    assert pong["op"] == "pong"
    position = Position.objects.get(symbol="BTCUSDT", position_idx=0)
    assert (position.size, position.realized_pnl) == (D("0.6"), D("8"))


# Channels closes stale DB connections around every frame, so even auth-only tests touch the DB layer.
@pytest.mark.django_db(transaction=True)
def test_a_large_frame_before_auth_is_refused_unparsed(monkeypatch):
    parsed = []
    real_loads = json.loads

    def spy(raw, *args, **kwargs):
        if "pad" in raw:  # the test's own reading of the answers goes through json.loads too
            parsed.append(raw)
        return real_loads(raw, *args, **kwargs)

    monkeypatch.setattr(consumers.json, "loads", spy)

    async def scenario():
        ws = communicator(None)
        await ws.connect()
        await ws.send_to(json.dumps({"op": "auth", "api_key": KEY, "pad": "x" * consumers.PRE_AUTH_MAX_BYTES}))
        return await _closed_with(ws)

    error, code = run(scenario)
    assert code == consumers.CLOSE_TOO_BIG == 1009
    assert "exceeds 4096 bytes" in error["error"]
    assert parsed == [], "the frame must not be parsed"


# Channels closes stale DB connections around every frame, so even auth-only tests touch the DB layer.
@pytest.mark.django_db(transaction=True)
def test_a_small_auth_frame_still_authenticates_and_large_frames_pass_after_auth():
    async def scenario():
        ws = communicator(None)
        await ws.connect()
        await ws.send_json_to({"op": "auth", "api_key": KEY})
        accepted = await ws.receive_json_from()
        await ws.send_json_to({"op": "ping", "req_id": "x" * (2 * consumers.PRE_AUTH_MAX_BYTES)})
        pong = await ws.receive_json_from()
        await ws.disconnect()
        return accepted, pong

    accepted, pong = run(scenario)
    assert accepted["success"] is True and pong["op"] == "pong"


@pytest.mark.django_db(transaction=True)
def test_the_endpoint_records_the_ws_gateway_heartbeat_while_connected(real_heartbeat):
    from ordermanager.core.models import Heartbeat
    from ordermanager.dashboard.selectors import DOWN, OK, health_components

    def gateway_health():
        return next(c for c in health_components() if c.name == "ws_gateway")

    assert gateway_health().status != OK

    async def wait_for_beat(ok: bool):
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            beat = await sync_to_async(Heartbeat.objects.filter(component="ws_gateway").first)()
            if beat is not None and beat.ok is ok:
                return beat
            assert asyncio.get_running_loop().time() < deadline, "no heartbeat written"
            await asyncio.sleep(0.02)

    async def scenario():
        ws = communicator()
        await ws.connect()
        up = await wait_for_beat(True)
        health_up = await sync_to_async(gateway_health)()
        await ws.disconnect()
        down = await wait_for_beat(False)
        return up, health_up, down

    up, health_up, down = run(scenario)
    assert "connected" in up.detail and health_up.status == OK
    assert "disconnected" in down.detail
    assert gateway_health().status == DOWN


# --- group commit (docs/decisions/0419) -----------------------------------------------------------------


def _held_position(symbol: str):
    """A thread holding ``symbol``'s position row locked until released: a message for the symbol waits on it
    (and, on its connection, the frames sent after it)."""
    import threading

    from django.db import connection, transaction

    Position.objects.get_or_create(symbol=symbol)
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                Position.objects.select_for_update().get(symbol=symbol)
                locked.set()
                release.wait(20)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    return holder, release


async def _until(condition, what: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


def _transactions_of(exec_ids: list[str]) -> list[int]:
    """The id of the transaction that stored each execution (PostgreSQL's xmin), in the order given."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT exec_id, xmin::text::bigint FROM orders_execution WHERE exec_id = ANY(%s)", [exec_ids])
        by_id = dict(cursor.fetchall())
    return [by_id.get(exec_id) for exec_id in exec_ids]


def _fill(order, **kwargs) -> dict:
    return bm.message("execution", [bm.execution_item(order_link_id=order.order_link_id, **kwargs)])


def _sent_while_held(messages: list[dict], *, replies: int = 1) -> list[dict]:
    """Send ``messages`` on one connection while BTCUSDT's position row is held, so they queue behind the first
    one's transaction; let go once all are queued, then ping: the ``replies`` answers (the pong last)."""
    holder, release = _held_position("BTCUSDT")

    async def scenario():
        ws = communicator()
        await ws.connect()
        for message in messages:
            await ws.send_json_to(message)
        await _until(lambda: consumers.frames_waiting() == len(messages),
                     "the frames did not reach the connection's queue")  # fmt: skip
        release.set()
        await ws.send_json_to({"op": "ping"})
        answers = [await ws.receive_json_from() for _ in range(replies)]  # after every message before it committed
        await ws.disconnect()
        return answers

    try:
        return run(scenario)
    finally:
        release.set()
        holder.join(10)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_frames_that_arrive_while_a_transaction_runs_are_committed_together_in_the_next_one():
    orders = [OrderFactory(qty=D("1")) for _ in range(5)]
    messages = [_fill(order, qty="0.1", price="100") for order in orders]
    # The first one's transaction waits for the row lock; the others queue meanwhile.
    (pong,) = _sent_while_held(messages)
    assert pong["op"] == "pong"
    transactions = _transactions_of([m["data"][0]["execId"] for m in messages])
    assert None not in transactions
    assert transactions[0] != transactions[1] and len(set(transactions[1:])) == 1, transactions
    assert Position.objects.get(symbol="BTCUSDT").size == D("0.5")
    assert consumers.frames_waiting() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_frame_applied_in_a_group_is_checked_once_on_receipt():
    # The check runs per item (docs/decisions/0424): on receipt, before the frame is queued, and not again
    # when its group is applied.
    from orders.services.fills import dispatch, refusals

    orders = [OrderFactory(qty=D("1")) for _ in range(4)]
    messages = [_fill(order, qty="0.1", price="100") for order in orders]
    checked = []

    def check(message):
        checked.append(message.items[0].exec_id)
        refusals.message_check(message)

    with mock.patch.object(consumers, "message_check", check), mock.patch.object(dispatch, "message_check", check):
        (pong,) = _sent_while_held(messages)
    assert pong["op"] == "pong"
    assert len(set(_transactions_of([m["data"][0]["execId"] for m in messages])[1:])) == 1  # a group it was
    assert sorted(checked) == sorted(m["data"][0]["execId"] for m in messages)
    assert Position.objects.get(symbol="BTCUSDT").size == D("0.4")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_bad_message_in_a_group_gets_its_error_and_the_good_ones_are_committed(caplog):
    orders = [OrderFactory(qty=D("1")) for _ in range(4)]
    first, good, bad, last = (_fill(orders[0], qty="0.1"), _fill(orders[1], qty="0.2"),
                              _fill(orders[2], qty="-1"), _fill(orders[3], qty="0.3"))  # fmt: skip
    replies = _sent_while_held([first, good, bad, last], replies=2)
    assert replies == [
        {"op": "error", "error": "could not apply execution message: IntegrityError", "id": bad["id"]},
        {"op": "pong", "req_id": None},
    ]
    stored = set(Execution.objects.values_list("exec_id", flat=True))
    assert stored == {m["data"][0]["execId"] for m in (first, good, last)}
    assert Position.objects.get(symbol="BTCUSDT").size == D("0.6")
    assert _logged(caplog, "gateway_group_failed"), "the group was not tried whole first"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_connections_on_one_position_keep_each_connections_order_and_the_fold():
    """Two gateway connections flood fills (and malformed frames) of one position at once: every frame of a
    connection is settled in its order (its transactions' ids never go down, its errors come in frame order),
    and the position is the fold of all the fills (validation finds nothing)."""
    from orders.selectors.validation import positions_recompute_differences
    from positions.models import PositionLedgerEntry

    per_connection = 40
    plans = []
    for c in range(2):
        frames = []
        for k in range(per_connection):
            order = OrderFactory(qty=D("5"))
            side = "Buy" if (k + c) % 3 else "Sell"
            items = [
                bm.execution_item(order_link_id=order.order_link_id, side=side, qty=f"0.0{1 + n}", price=str(100 + k),
                                  exec_ms=bm.BASE_MS + 2 * k + c)
                for n in range(1 + k % 3)
            ]  # fmt: skip
            frames.append(bm.message("execution", items))
            if k % 10 == 5:  # an error frame each connection must get in its place
                frames.append({"id": f"bad-{c}-{k}", "topic": "execution", "data": [{"execQty": "x"}]})
        plans.append(frames)

    async def flood(frames):
        ws = communicator()
        await ws.connect()
        for frame in frames:
            await ws.send_json_to(frame)
        await ws.send_json_to({"op": "ping"})
        replies = []
        while not replies or replies[-1]["op"] != "pong":
            replies.append(await ws.receive_json_from())
        await ws.disconnect()
        return replies

    async def scenario():
        return await asyncio.gather(*(flood(frames) for frames in plans))

    answers = run(scenario)
    for frames, replies in zip(plans, answers, strict=True):
        bad = [f["id"] for f in frames if f.get("id", "").startswith("bad-")]
        assert [r.get("id") for r in replies[:-1]] == bad and replies[-1]["op"] == "pong"
        exec_ids = [item["execId"] for f in frames if f["id"] not in bad for item in f["data"]]
        transactions = _transactions_of(exec_ids)
        assert None not in transactions and transactions == sorted(transactions), "a connection's frames reordered"
    assert positions_recompute_differences() == []
    assert PositionLedgerEntry.objects.count() == Execution.objects.count() == sum(
        len(f["data"]) for frames in plans for f in frames if not str(f["id"]).startswith("bad-")
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_frames_received_before_a_disconnect_are_applied_before_the_connection_ends():
    orders = [OrderFactory(qty=D("1")) for _ in range(3)]
    messages = [_fill(order, qty="0.1") for order in orders]
    holder, release = _held_position("BTCUSDT")

    async def scenario():
        ws = communicator()
        await ws.connect()
        for message in messages:
            await ws.send_json_to(message)
        await _until(lambda: consumers.frames_waiting() == 3, "the frames did not reach the connection's queue")
        await ws.send_input({"type": "websocket.disconnect", "code": 1001})
        release.set()
        await ws.wait(10)  # the consumer has ended

    try:
        run(scenario)
    finally:
        release.set()
        holder.join(10)
    assert set(Execution.objects.values_list("exec_id", flat=True)) == {m["data"][0]["execId"] for m in messages}
    assert consumers.frames_waiting() == 0
