"""/v5/order/realtime and /v5/order/history answer as Bybit's do (shared/BYBIT.md §3.5, §3.6):
realtime = open orders (openOnly=0), the 500 most recent closed ones (openOnly=1), any of those by id;
history = orders in a final state only, Cancelled/Rejected without fills for 24 hours."""

from decimal import Decimal as D

from exchange.simulator.engine import SimEngine
from exchange.simulator.wire import DAY_MS


def links(answer: dict) -> list[str]:
    assert answer["retCode"] == 0, answer
    return [o["orderLinkId"] for o in answer["result"]["list"]]


def book(http, simulator):
    """One order in each state: New, PartiallyFilled, Filled, Cancelled, partially filled then cancelled."""
    http.order(orderLinkId="new")
    http.order(orderLinkId="partial")
    simulator.engine.force_fill(order_link_id="partial", qty="0.004")
    http.order(orderLinkId="filled", orderType="Market", price=None)
    http.order(orderLinkId="cancelled")
    http.order(orderLinkId="part-cancelled")
    simulator.engine.force_fill(order_link_id="part-cancelled", qty="0.002")
    for link in ("cancelled", "part-cancelled"):
        assert http.post("/v5/order/cancel", category="linear", symbol="BTCUSDT", orderLinkId=link)["retCode"] == 0


def test_history_holds_closed_orders_only(http, simulator):
    book(http, simulator)
    history = http.get("/v5/order/history", category="linear", symbol="BTCUSDT")
    assert links(history) == ["part-cancelled", "cancelled", "filled"]
    assert {o["orderStatus"] for o in history["result"]["list"]} == {"Cancelled", "Filled"}
    for link in ("new", "partial"):  # open: on /realtime, not (yet) in history, even when asked by id
        assert links(http.get("/v5/order/history", category="linear", orderLinkId=link)) == []
        order_id = simulator.engine.orders_by_link[link].order_id
        assert links(http.get("/v5/order/history", category="linear", orderId=order_id)) == []
    assert links(http.get("/v5/order/history", category="linear", orderLinkId="filled")) == ["filled"]
    assert links(http.get("/v5/order/history", category="linear", settleCoin="USDT", orderStatus="New")) == []
    assert links(http.get("/v5/order/history", category="linear", symbol="BTCUSDT",
                          orderStatus="Filled")) == ["filled"]
    # Once it closes, the same order moves to history.
    http.post("/v5/order/cancel", category="linear", symbol="BTCUSDT", orderLinkId="new")
    assert links(http.get("/v5/order/history", category="linear", orderLinkId="new")) == ["new"]


def test_realtime_serves_open_orders_recent_closed_ones_and_any_of_them_by_id(http, simulator):
    book(http, simulator)
    assert links(http.get("/v5/order/realtime", category="linear", symbol="BTCUSDT")) == ["partial", "new"]
    assert links(http.get("/v5/order/realtime", category="linear", symbol="BTCUSDT", openOnly=0)) == [
        "partial", "new"]
    assert links(http.get("/v5/order/realtime", category="linear", settleCoin="USDT", openOnly=1)) == [
        "part-cancelled", "cancelled", "filled"]
    for link in ("new", "partial", "filled", "cancelled"):  # by id: openOnly is ignored
        assert links(http.get("/v5/order/realtime", category="linear", orderLinkId=link, openOnly=0)) == [link]
        order_id = simulator.engine.orders_by_link[link].order_id
        [item] = http.get("/v5/order/realtime", category="linear", orderId=order_id)["result"]["list"]
        assert item["orderLinkId"] == link
    [partial] = http.get("/v5/order/realtime", category="linear", orderLinkId="partial")["result"]["list"]
    assert (partial["orderStatus"], partial["cumExecQty"], partial["leavesQty"]) == ("PartiallyFilled", "0.004",
                                                                                      "0.006")
    assert links(http.get("/v5/order/realtime", category="linear", orderLinkId="never-sent")) == []


def test_realtime_keeps_the_500_most_recent_closed_orders_history_keeps_the_rest():
    engine = SimEngine(initial_balance="100000000")
    for i in range(501):
        engine.create_order({"category": "linear", "symbol": "XRPUSDT", "side": "Buy", "orderType": "Market",
                             "qty": "10", "orderLinkId": f"m-{i}"})
    oldest = {"category": "linear", "orderLinkId": "m-0"}
    assert engine.open_or_recent_orders(oldest) == ([], "")
    [item], _ = engine.order_history(oldest)
    assert item["orderStatus"] == "Filled"
    page, cursor = engine.open_or_recent_orders({"category": "linear", "symbol": "XRPUSDT", "openOnly": "1",
                                                 "limit": "50"})
    assert page[0]["orderLinkId"] == "m-500" and cursor


def test_history_forgets_unfilled_cancelled_orders_after_a_day_but_not_filled_ones():
    now = [1_700_000_000_000]
    engine = SimEngine(clock=lambda: now[0])
    base = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "qty": "0.010"}
    engine.create_order({**base, "orderType": "Limit", "price": "60000.0", "orderLinkId": "gone"})
    engine.cancel_order({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "gone"})
    engine.create_order({**base, "orderType": "Limit", "price": "60000.0", "orderLinkId": "part"})
    engine.force_fill(order_link_id="part", qty="0.005")
    engine.cancel_order({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "part"})
    engine.create_order({**base, "orderType": "Market", "orderLinkId": "done"})
    query = {"category": "linear", "symbol": "BTCUSDT"}
    assert [o["orderLinkId"] for o in engine.order_history(query)[0]] == ["done", "part", "gone"]
    now[0] += DAY_MS + 1
    assert [o["orderLinkId"] for o in engine.order_history(query)[0]] == ["done", "part"]
    assert engine.orders_by_link["part"].cum_exec_qty == D("0.005")
