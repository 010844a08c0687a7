"""Private events pushed to a WebSocket callback as ws-gateway would, with and without event faults."""

import json
import socket
import threading
import time

import httpx
import pytest
from starlette.testclient import TestClient
from websockets.sync.server import serve

from exchange.simulator.app import build_app
from exchange.simulator.faults import EventFilter, FaultConfig

ORDER = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.001"}
SUBSCRIPTIONS = "/ws-gateway/api/v1/subscriptions"


class Receiver:
    """A tiny WebSocket server standing in for the order manager's ws/gateway/ endpoint."""

    def __init__(self, port: int = 0) -> None:
        self.frames: list[dict] = []
        self.api_keys: list[str] = []
        self.server = serve(self._handle, "127.0.0.1", port)
        self.port = self.server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/ws/gateway/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, connection) -> None:
        self.api_keys.append(connection.request.headers.get("X-API-Key"))
        for frame in connection:
            self.frames.append(json.loads(frame))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            assert time.monotonic() < deadline, f"got {len(self.frames)} of {count} frames"
            time.sleep(0.01)
        return self.frames

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def subscribe(simulator, url, *, key="gw-key", topics=("order", "execution", "position", "wallet")):
    return httpx.post(f"{simulator.url}{SUBSCRIPTIONS}", headers={"X-API-Key": key},
                      json={"subscriber": "order-manager", "topics": list(topics), "callback_url": url})


def test_events_are_pushed_in_bybit_shape_and_order(simulator, receiver):
    answer = subscribe(simulator, receiver.url)
    assert answer.status_code == 201 and answer.json()["topics"] == ["order", "execution", "position", "wallet"]
    simulator.engine.create_order({**ORDER, "orderLinkId": "ws-1"})
    simulator.engine.create_order({**ORDER, "orderType": "Limit", "price": "60000.0", "orderLinkId": "ws-2"})
    log = list(simulator.engine.event_log)
    frames = receiver.wait_for(len(log))
    assert frames == log and receiver.api_keys == ["gw-key"]
    assert [f["topic"] for f in frames[:4]] == ["order", "execution", "position", "wallet"]
    order, execution = frames[0]["data"][0], frames[1]["data"][0]
    assert (order["orderLinkId"], order["orderStatus"], order["category"]) == ("ws-1", "Filled", "linear")
    assert (execution["execType"], execution["execQty"], execution["isMaker"]) == ("Trade", "0.001", False)
    assert "entryPrice" in frames[2]["data"][0] and isinstance(frames[0]["creationTime"], int)


def test_topics_filter_and_unsubscribe(simulator, receiver):
    sub_id = subscribe(simulator, receiver.url, topics=["execution"]).json()["id"]
    simulator.engine.create_order(ORDER)
    assert [f["topic"] for f in receiver.wait_for(1)] == ["execution"]
    assert httpx.delete(f"{simulator.url}{SUBSCRIPTIONS}/{sub_id}", headers={"X-API-Key": "k"}).status_code == 204
    assert simulator.state.gateway.subscriptions == {} and simulator.engine.state()["sinks"] == []
    simulator.engine.create_order({**ORDER, "orderLinkId": "while-unsubscribed"})
    subscribe(simulator, receiver.url, topics=["execution"])
    simulator.engine.create_order({**ORDER, "orderLinkId": "after"})
    frames = receiver.wait_for(2)
    assert [f["data"][0]["orderLinkId"] for f in frames] == ["", "after"]


def test_event_faults_on_the_socket_are_deterministic(simulator, receiver):
    simulator.state.faults.update({"drop_events": 0.25, "duplicate_events": 0.25, "reorder_events": 0.25,
                                   "reorder_hold_seconds": 30.0, "seed": 9})
    subscribe(simulator, receiver.url)
    for i in range(10):
        simulator.engine.create_order({**ORDER, "orderLinkId": f"ev-{i}"})
    httpx.post(f"{simulator.url}/sim/flush-events")
    replay = EventFilter(FaultConfig(drop_events=0.25, duplicate_events=0.25, reorder_events=0.25, seed=9), 0)
    expected = [out["id"] for m in simulator.engine.event_log for out in replay.process(m)]
    expected += [m["id"] for m in replay.flush()]
    frames = receiver.wait_for(len(expected))
    assert [f["id"] for f in frames] == expected
    assert all(replay.counts.values())


def test_events_wait_in_a_buffer_until_the_callback_is_reachable(simulator):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert subscribe(simulator, f"ws://127.0.0.1:{port}/ws/gateway/").status_code == 201
    simulator.engine.create_order(ORDER)
    log = list(simulator.engine.event_log)
    late = Receiver(port)
    try:
        assert late.wait_for(len(log)) == log
    finally:
        late.close()


def test_registration_errors(simulator):
    assert subscribe(simulator, "ws://127.0.0.1:1/x", key="").status_code == 401
    for body in ({}, {"subscriber": "om", "topics": ["nope"], "callback_url": "ws://x"},
                 {"subscriber": "om", "topics": ["order"], "callback_url": "http://x"}):
        response = httpx.post(f"{simulator.url}{SUBSCRIPTIONS}", headers={"X-API-Key": "k"}, json=body)
        assert response.status_code == 400 and response.json()["error"]
    assert simulator.state.gateway.subscriptions == {}


def test_a_configured_gateway_key_is_enforced():
    app = build_app(api_key="k", api_secret="s", ws_gateway_key="right")
    with TestClient(app) as client:
        body = {"subscriber": "om", "topics": ["order"], "callback_url": "ws://127.0.0.1:1/ws/gateway/"}
        assert client.post(SUBSCRIPTIONS, headers={"X-API-Key": "wrong"}, json=body).status_code == 401
        assert client.post(SUBSCRIPTIONS, headers={"X-API-Key": "right"}, json=body).status_code == 201
