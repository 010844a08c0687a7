"""End to end through a real WebSocket: orders on the simulator → its fills → pushed by its ws-gateway role
over a TCP WebSocket to our ASGI server (uvicorn + ordermanager.asgi) → positions and PnL in the database
equal the simulator's /v5/position/list.

uvicorn runs in a thread of this process, so it uses this test's database (pytest-django's
test_<name>, transactional test so the server threads see committed rows). The simulator
delivers with duplicate and reorder faults on.
"""

from __future__ import annotations

import socket
import threading
import time
from decimal import Decimal as D

import httpx
import pytest
import uvicorn
from django.db import connection

from exchange.bybit.client import get_client
from orders.models import Execution, Order, OrderStatus
from orders.services.cancellation import order_cancel
from orders.services.gateway_registration import ws_gateway_register
from orders.services.order_executor import order_submit
from positions.models import Position
from positions.services.marks import positions_refresh_mark_prices

# PostgreSQL: the server threads write while the test reads (SQLite's shared in-memory test database locks).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres]

GATEWAY_KEY = "e2e-gateway-key"


@pytest.fixture
def asgi_url(settings):
    settings.WS_GATEWAY_API_KEY = GATEWAY_KEY
    from ordermanager.asgi import application

    # Server threads close their connection after each message, so the test database can be dropped.
    max_age = connection.settings_dict.get("CONN_MAX_AGE", 0)
    connection.settings_dict["CONN_MAX_AGE"] = 0

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, lifespan="off", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _until(lambda: server.started, "uvicorn did not start")
    yield f"ws://127.0.0.1:{port}/ws/gateway/"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    connection.settings_dict["CONN_MAX_AGE"] = max_age


def _until(condition, message: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message)


def _submit(symbol, side, qty, *, link, order_type="Market", price=None, idx=0, reduce_only=False) -> Order:
    order = Order.objects.create(
        order_link_id=link, symbol=symbol, side=side, order_type=order_type, qty=D(qty),
        price=D(price) if price else None, time_in_force="GTC" if price else "IOC", position_idx=idx,
        reduce_only=reduce_only,
    )  # fmt: skip
    order = order_submit(order=order)
    assert order.status != OrderStatus.REJECTED, order.reject_reason
    return order


def _sim(simulator, path: str, body: dict) -> None:
    httpx.post(simulator.url + path, json=body).raise_for_status()


def _matches_exchange() -> list[str]:
    """Differences between our positions and the simulator's /v5/position/list (empty when equal)."""
    problems = []
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for info in get_client().get_positions(category="linear", symbol=symbol):
            ours = Position.objects.filter(symbol=symbol, position_idx=info.position_idx).first()
            size = ours.signed_size if ours else D(0)
            if size != info.signed_size:
                problems.append(f"{symbol}[{info.position_idx}] size {size} != {info.signed_size}")
                continue
            if not ours:
                continue
            if info.size and abs(ours.avg_entry_price - info.avg_price) > D("1e-7"):
                problems.append(f"{symbol}[{info.position_idx}] entry {ours.avg_entry_price} != {info.avg_price}")
            # The simulator's cumRealisedPnl leaves trading fees out (Bybit's counts them).
            if abs(ours.realized_pnl + ours.fees_paid - info.cum_realised_pnl) > D("1e-6"):
                problems.append(f"{symbol}[{info.position_idx}] realized {ours.realized_pnl} + fees "
                                f"{ours.fees_paid} != {info.cum_realised_pnl}")  # fmt: skip
            if info.size and (ours.mark_price != info.mark_price or
                              abs(ours.unrealized_pnl - info.unrealised_pnl) > D("1e-6")):  # fmt: skip
                problems.append(f"{symbol}[{info.position_idx}] unrealized {ours.unrealized_pnl} "
                                f"@{ours.mark_price} != {info.unrealised_pnl} @{info.mark_price}")  # fmt: skip
    return problems


def test_fills_pushed_over_a_real_websocket_match_the_exchange(settings, bybit_settings, simulator, asgi_url):
    settings.WS_GATEWAY_HOST, settings.WS_GATEWAY_PORT = "127.0.0.1", simulator.port
    settings.WS_GATEWAY_CALLBACK_URL, settings.ENABLE_DRY_RUN = asgi_url, False
    _sim(simulator, "/sim/faults", {"duplicate_events": 0.3, "reorder_events": 0.3, "seed": 7})
    assert ws_gateway_register()
    subs = simulator.url + "/ws-gateway/api/v1/subscriptions"
    _until(lambda: httpx.get(subs, headers={"X-API-Key": GATEWAY_KEY}).json()["subscriptions"][0]["connected"],
           "the simulator never connected to our endpoint")  # fmt: skip

    # One-way BTCUSDT: open, add at a higher price, flip with a resting limit, funding, partial fill + cancel.
    _submit("BTCUSDT", "Buy", "0.010", link="e2e-1")
    _sim(simulator, "/sim/price", {"symbol": "BTCUSDT", "price": "65500"})
    _submit("BTCUSDT", "Buy", "0.020", link="e2e-2")
    _submit("BTCUSDT", "Sell", "0.050", link="e2e-3", order_type="Limit", price="66000")
    _sim(simulator, "/sim/price", {"symbol": "BTCUSDT", "price": "66100"})  # crosses: flips to -0.020
    _sim(simulator, "/sim/funding", {"symbol": "BTCUSDT", "rate": "0.0001"})
    partial = _submit("BTCUSDT", "Buy", "0.010", link="e2e-4", order_type="Limit", price="60000")
    _sim(simulator, "/sim/fill", {"orderLinkId": "e2e-4", "qty": "0.004"})
    # Hedge ETHUSDT: both sides, then reduce the long.
    get_client().switch_position_mode(category="linear", symbol="ETHUSDT", mode=3)
    _submit("ETHUSDT", "Buy", "0.50", link="e2e-5", idx=1)
    _submit("ETHUSDT", "Sell", "0.30", link="e2e-6", idx=2)
    _sim(simulator, "/sim/price", {"symbol": "ETHUSDT", "price": "3550"})
    _submit("ETHUSDT", "Sell", "0.20", link="e2e-7", idx=1, reduce_only=True)
    _until(lambda: Order.objects.get(pk=partial.pk).filled_qty == D("0.004"), "partial fill never arrived")
    assert order_cancel(order=Order.objects.get(pk=partial.pk), reason="manual").result == "cancelled"
    _sim(simulator, "/sim/price", {"symbol": "BTCUSDT", "price": "65800"})  # marks move; position topic follows
    _sim(simulator, "/sim/flush-events", {})  # release what the reorder fault still holds
    # Mark prices move without a position push (as on Bybit): the scheduled refresh reads the tickers.
    _until(lambda: Execution.objects.count() == len(simulator.engine.executions), "fills missing")
    positions_refresh_mark_prices()

    try:
        _until(lambda: not _matches_exchange(), "positions never matched the exchange", timeout=30)
    except AssertionError:
        raise AssertionError(_matches_exchange()) from None
    _until(lambda: Order.objects.get(pk=partial.pk).status == OrderStatus.CANCELLED, "cancel never confirmed")
    partial.refresh_from_db()
    assert (partial.status, partial.filled_qty, partial.cancel_reason) == (OrderStatus.CANCELLED, D("0.004"), "manual")
    assert Order.objects.get(order_link_id="e2e-3").status == OrderStatus.FILLED
    btc = Position.objects.get(symbol="BTCUSDT", position_idx=0)
    assert btc.signed_size == D("-0.016")  # +0.010 +0.020 -0.050 +0.004
    assert btc.funding_paid != 0
