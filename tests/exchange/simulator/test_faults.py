"""Fault injection: each request fault's exact semantics, determinism by seed, event faults."""

import json
import time

import httpx
import pytest

from exchange.simulator.faults import EventFilter, FaultConfig

ORDER = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
         "price": "60000.0"}


def create(http, link_id, **overrides):
    return http.post_raw("/v5/order/create", json.dumps({**ORDER, "orderLinkId": link_id, **overrides}))


def set_faults(http, **faults):
    response = http.client.post("/sim/faults", json=faults)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_rate_limit_fault_is_10006_with_reset_header_and_nothing_done(http, simulator):
    set_faults(http, rate_limit=1.0)
    response = create(http, "f-1")
    assert response.status_code == 200 and response.json()["retCode"] == 10006
    assert int(response.headers["X-Bapi-Limit-Reset-Timestamp"]) >= time.time() * 1000 - 1000
    assert simulator.engine.orders == {}


@pytest.mark.parametrize("fault, status", [("http_429", 429), ("server_error", 503)])
def test_429_and_5xx_faults_answer_before_processing(http, simulator, fault, status):
    set_faults(http, **{fault: 1.0})
    assert create(http, "f-2").status_code == status
    assert simulator.engine.orders == {}


def test_dropped_response_means_the_order_exists_but_the_client_got_504(http, simulator):
    set_faults(http, drop_response=1.0, paths=["/v5/order/create"])
    response = create(http, "f-3")
    assert response.status_code == 504 and "Gateway" in response.text
    lookup = http.get("/v5/order/realtime", category="linear", orderLinkId="f-3")["result"]["list"]
    assert [o["orderStatus"] for o in lookup] == ["New"]  # the faults are limited to create


def test_dropped_response_in_delay_mode_times_the_client_out_after_processing(simulator):
    from tests.exchange.simulator.helpers import SignedHttp

    client = SignedHttp(simulator.url, timeout=0.2)
    set_faults(client, drop_response=1.0, drop_response_mode="delay", timeout_seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        create(client, "f-4")
    assert simulator.engine.orders_by_link["f-4"].status == "New"  # processed before the answer was held
    client.close()


def test_timeout_fault_holds_the_request_then_processes_it_late(simulator):
    from tests.exchange.simulator.helpers import SignedHttp

    client = SignedHttp(simulator.url, timeout=0.1)
    set_faults(client, timeout=1.0, timeout_seconds=0.4)
    with pytest.raises(httpx.ReadTimeout):
        create(client, "f-5")
    assert "f-5" not in simulator.engine.orders_by_link  # not yet: the write lands after the client gave up
    wait_for(lambda: "f-5" in simulator.engine.orders_by_link)
    client.close()


def test_request_faults_are_deterministic_by_seed(http, simulator):
    def run(seed):
        simulator.reset()
        set_faults(http, rate_limit=0.1, http_429=0.1, server_error=0.1, drop_response=0.1, seed=seed)
        outcomes = []
        for i in range(60):
            response = create(http, f"d-{i}")
            outcomes.append(response.status_code if response.status_code != 200 else response.json()["retCode"])
        return outcomes, sorted(o.order_link_id for o in simulator.engine.orders.values())

    first, again, other = run(11), run(11), run(12)
    assert first == again and first != other
    assert {429, 503, 504, 10006, 0} == set(first[0])
    dropped = [f"d-{i}" for i, code in enumerate(first[0]) if code in (0, 504)]
    assert first[1] == sorted(dropped)  # exactly the accepted and the dropped-response creates exist


def test_thousand_creates_with_thirty_percent_dropped_responses_create_each_order_once(http, simulator):
    set_faults(http, drop_response=0.3, paths=["/v5/order/create"], seed=5)
    started, dropped = time.monotonic(), 0
    for i in range(1000):  # market orders: 1,000 resting limits would hit the 500-open-orders cap (110020)
        response = create(http, f"k-{i}", orderType="Market")
        if response.status_code == 504:
            dropped += 1
            # A careful client looks the order up before any resend; here it is always there.
            found = http.get("/v5/order/realtime", category="linear", orderLinkId=f"k-{i}")["result"]["list"]
            assert len(found) == 1
            resend = create(http, f"k-{i}", orderType="Market")  # a blind resend: 110072, or dropped again
            assert resend.status_code == 504 or resend.json()["retCode"] == 110072
    assert 250 < dropped < 350
    assert len(simulator.engine.orders) == 1000
    assert time.monotonic() - started < 60


def test_bad_fault_settings_are_refused_and_change_nothing(http):
    before = http.client.get("/sim/faults").json()
    for bad in ({"rate_limit": 2}, {"nope": 1}, {"paths": "x"}, {"rate_limit": 0.6, "http_429": 0.6},
                {"drop_response_mode": "lost"}):
        response = http.client.post("/sim/faults", json=bad)
        assert response.status_code == 400 and response.json()["error"]
    assert http.client.get("/sim/faults").json() == before


def test_event_faults_follow_the_seed_and_unfaulted_listeners_see_everything(simulator):
    engine = simulator.engine
    simulator.state.faults.update({"drop_events": 0.2, "duplicate_events": 0.2, "reorder_events": 0.2,
                                   "reorder_hold_seconds": 30.0, "seed": 3})
    faulted, clean = [], []
    engine.add_listener(faulted.append)
    engine.add_listener(clean.append, faults=False)
    for i in range(15):
        engine.create_order({**ORDER, "orderType": "Market", "orderLinkId": f"e-{i}"})
    engine.flush_events()

    assert [m["id"] for m in clean] == [m["id"] for m in engine.event_log]
    replay = EventFilter(FaultConfig(drop_events=0.2, duplicate_events=0.2, reorder_events=0.2, seed=3), 0)
    expected = [out["id"] for m in engine.event_log for out in replay.process(m)] + [m["id"] for m in replay.flush()]
    assert [m["id"] for m in faulted] == expected
    assert replay.counts["dropped"] and replay.counts["duplicated"] and replay.counts["reordered"]
    assert len(faulted) != len(clean)
    # The filter remembers exactly the messages it withheld.
    dropped = {m["id"] for m in replay.dropped}
    assert len(dropped) == replay.counts["dropped"]
    assert dropped == {m["id"] for m in engine.event_log} - {m["id"] for m in faulted}
