"""Supported shortcuts for scenarios and benchmarks: seeding many resting orders at once and setting a
position with no execution behind it (instead of writing into the engine's dictionaries)."""

import time
from decimal import Decimal as D

import pytest

from exchange.simulator.engine import SimEngine
from exchange.simulator.wire import SimError


def resting(symbol="BTCUSDT", *, n: int, price="30000.0", qty="0.010", prefix="seed"):
    return [{"symbol": symbol, "side": "Buy", "qty": qty, "price": price, "orderLinkId": f"{prefix}-{symbol}-{i}"}
            for i in range(n)]


def test_seeded_orders_rest_on_the_book_and_are_served_by_realtime_without_events(http, simulator):
    events = []
    simulator.engine.add_listener(events.append, faults=False)
    answer = http.control("/sim/seed-orders", {"orders": resting(n=120) + resting("ETHUSDT", n=3, price="3000.00",
                                                                                   qty="0.10")})
    assert answer["count"] == 123 and answer["list"][0]["orderLinkId"] == "seed-BTCUSDT-0"
    pages, cursor = [], None
    while True:
        result = http.get("/v5/order/realtime", category="linear", symbol="BTCUSDT", limit=50, cursor=cursor)["result"]
        pages.append(result["list"])
        cursor = result["nextPageCursor"]
        if not cursor:
            break
    assert [len(p) for p in pages] == [50, 50, 20]
    assert {o["orderStatus"] for p in pages for o in p} == {"New"} and events == []
    # They are ordinary orders from now on: amend, cancel, fill and match as any other.
    assert http.post("/v5/order/cancel", category="linear", symbol="BTCUSDT",
                     orderLinkId="seed-BTCUSDT-1")["retCode"] == 0
    simulator.engine.set_price("ETHUSDT", "2999.00")
    assert {simulator.engine.orders_by_link[f"seed-ETHUSDT-{i}"].status for i in range(3)} == {"Filled"}
    assert len(simulator.engine.open_orders) == 119


def test_seeding_is_all_or_nothing_and_checked_like_a_create():
    engine = SimEngine()
    engine.seed_open_orders(resting(n=2, prefix="first"))
    cases = [
        (resting(n=1) + [{"symbol": "BTCUSDT", "side": "Buy", "qty": "0.010", "price": "66000.0"}],
         10001, "seed order #1: params error: price 66000.0 would cross the last price 65000.00"),
        (resting(n=1, prefix="first"), 110072, "seed order #0: OrderLinkedID is duplicate"),
        (resting(n=2, prefix="twice")[:1] * 2, 110072, "seed order #1"),
        (resting(n=1, qty="0.0105"), 10001, "qtyStep"),
        (resting(n=1, qty="0.001", price="1000.0"), 110094, "minimum order value"),
        (resting("NOPEUSDT", n=1), 10001, "symbol invalid"),
        ([{**resting(n=1)[0], "reduceOnly": True}], 10001, "reduce-only orders cannot be seeded"),
        ([{**resting(n=1)[0], "timeInForce": "IOC"}], 10001, "cannot rest"),
        (resting(n=499), 110020, "seed order #498: Not allowed to have more than 500 active orders"),
    ]
    for orders, code, needle in cases:
        with pytest.raises(SimError) as caught:
            engine.seed_open_orders(orders)
        assert caught.value.ret_code == code and needle in caught.value.ret_msg, caught.value
        assert len(engine.orders) == 2, f"nothing placed for {needle!r}"


def test_ten_thousand_orders_seed_quickly():
    engine = SimEngine()
    engine.add_instruments([{"symbol": f"B{n:02d}USDT", "price": "100.0", "tickSize": "0.1", "qtyStep": "0.1"}
                            for n in range(20)])
    orders = [{"symbol": f"B{i % 20:02d}USDT", "side": "Sell", "qty": "1.0", "price": "150.0"} for i in range(10_000)]
    started = time.perf_counter()
    seeded = engine.seed_open_orders(orders)
    assert time.perf_counter() - started < 5
    assert len(seeded) == len(engine.open_orders) == 10_000 and len({o.order_id for o in seeded}) == 10_000
    assert [o.n for o in seeded] == sorted(o.n for o in seeded)


def test_set_position_changes_the_position_only_and_says_so_on_the_stream(http, simulator):
    engine = simulator.engine
    messages = []
    engine.add_listener(messages.append, faults=False)
    wallet_before = engine.wallet_balance
    answer = http.control("/sim/position", {"symbol": "BTCUSDT", "side": "Buy", "size": "0.025",
                                            "avgPrice": "64100.5"})
    assert (answer["position"]["size"], answer["position"]["avgPrice"]) == ("0.025", "64100.50")
    [row] = http.get("/v5/position/list", category="linear", symbol="BTCUSDT")["result"]["list"]
    assert (row["side"], row["size"]) == ("Buy", "0.025")
    assert engine.wallet_balance == wallet_before and engine.executions == []
    [message] = messages
    assert message["topic"] == "position" and message["data"][0]["entryPrice"] == "64100.50"
    http.control("/sim/position", {"symbol": "BTCUSDT", "size": "0"})
    assert (engine.positions[("BTCUSDT", 0)].size, engine.positions[("BTCUSDT", 0)].side) == (D(0), "")


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"symbol": "BTCUSDT", "size": "0.025"}, "side must be Buy or Sell"),
        ({"symbol": "BTCUSDT", "size": "0.0255", "side": "Buy", "avgPrice": "1"}, "positive multiple of 0.001"),
        ({"symbol": "BTCUSDT", "size": "0.025", "side": "Buy"}, "avgPrice must be positive"),
        ({"symbol": "BTCUSDT", "size": "0.025", "side": "Buy", "avgPrice": "1", "positionIdx": 1},
         "position idx not match position mode"),
        ({"symbol": "BTCUSDT", "size": "1", "side": "Buy", "avgPrice": "1", "entry": "1"}, "unknown field(s)"),
        ({"symbol": "NOPEUSDT", "size": "0"}, "symbol invalid"),
    ],
)
def test_set_position_refuses_bad_input(http, simulator, body, needle):
    response = http.client.post("/sim/position", json=body)
    assert response.status_code == 400 and needle in response.json()["error"], response.text
    assert simulator.engine.positions[("BTCUSDT", 0)].size == 0


def test_set_position_in_hedge_mode_names_the_side_by_position_idx():
    engine = SimEngine()
    engine.switch_mode({"category": "linear", "symbol": "ETHUSDT", "mode": 3})
    engine.set_position(symbol="ETHUSDT", position_idx=2, side="Sell", size="1.00", avg_price="3400")
    assert engine.positions[("ETHUSDT", 2)].side == "Sell"
    with pytest.raises(SimError, match="positionIdx 1 holds Buy only"):
        engine.set_position(symbol="ETHUSDT", position_idx=1, side="Sell", size="1.00", avg_price="3400")
