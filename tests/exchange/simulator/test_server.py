"""SimulatorServer lifecycle, the price timer, reset isolation and thread safety."""

import json
import threading
import time

import httpx
import pytest

from exchange.simulator.server import SimulatorServer
from tests.exchange.simulator.helpers import SignedHttp


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_server_runs_on_a_free_port_and_moves_prices_on_a_timer():
    server = SimulatorServer(seed=4, tick_interval=0.02)
    with pytest.raises(RuntimeError):
        server.url  # noqa: B018 - not started yet
    with server:
        url = server.url
        assert server.port != 0
        start = httpx.get(f"{server.url}/v5/market/tickers?category=linear&symbol=BTCUSDT").json()
        first = start["result"]["list"][0]["lastPrice"]

        def moved():
            answer = httpx.get(f"{server.url}/v5/market/tickers?category=linear&symbol=BTCUSDT").json()
            return answer["result"]["list"][0]["lastPrice"] != first

        wait_for(moved)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v5/market/time", timeout=0.5)


def test_a_request_held_by_the_timeout_fault_does_not_land_after_a_reset(simulator):
    client = SignedHttp(simulator.url, timeout=0.05)
    simulator.state.faults.update({"timeout": 1.0, "timeout_seconds": 0.3})
    body = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.001",
            "orderLinkId": "held"}
    with pytest.raises(httpx.ReadTimeout):
        client.post_raw("/v5/order/create", json.dumps(body))
    wait_for(lambda: simulator.state.held == 1)
    simulator.reset()
    wait_for(lambda: simulator.state.held == 0)
    assert "held" not in simulator.engine.orders_by_link
    client.close()


def test_engine_is_safe_to_use_from_threads_while_serving_http(simulator):
    http = SignedHttp(simulator.url)
    errors = []

    def direct(worker):
        try:
            for i in range(40):
                simulator.engine.create_order({"category": "linear", "symbol": "ETHUSDT", "side": "Buy",
                                               "orderType": "Market", "qty": "0.01", "orderLinkId": f"t{worker}-{i}"})
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=direct, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    for i in range(40):
        assert http.order(symbol="ETHUSDT", orderType="Market", price=None, qty="0.01",
                          orderLinkId=f"h-{i}")["retCode"] == 0
    for thread in threads:
        thread.join()
    assert errors == []
    engine = simulator.engine
    assert len(engine.orders) == 160 and len(engine.executions) == 160
    position = engine.positions[("ETHUSDT", 0)]
    assert str(position.size) == "1.60"
    fees = sum(e.exec_fee for e in engine.executions)
    assert engine.wallet_balance == engine.initial_balance - fees
    http.close()
