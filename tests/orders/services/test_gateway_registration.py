"""Registration with ws-gateway's management API, against the simulator playing ws-gateway."""

import socket

import httpx
import pytest

from exchange.simulator.server import SimulatorServer
from orders.services.gateway_registration import (
    GatewayRegistrationError,
    registration_request,
    ws_gateway_register,
    ws_gateway_unregister,
)


@pytest.fixture
def gateway(settings, simulator):
    settings.WS_GATEWAY_HOST, settings.WS_GATEWAY_PORT = "127.0.0.1", simulator.port
    settings.WS_GATEWAY_API_KEY = "gw-key"
    settings.WS_GATEWAY_CALLBACK_URL = "ws://127.0.0.1:9/ws/gateway/"  # nobody listens: the push just retries
    settings.ENABLE_DRY_RUN = False
    return simulator


def _subscriptions(simulator) -> list[dict]:
    return httpx.get(simulator.url + "/ws-gateway/api/v1/subscriptions", headers={"X-API-Key": "gw-key"}).json()[
        "subscriptions"
    ]


def test_registers_the_documented_request_and_unregisters(gateway):
    subscription_id = ws_gateway_register()

    [sub] = _subscriptions(gateway)
    assert sub["id"] == subscription_id
    assert (sub["subscriber"], sub["topics"], sub["callback_url"]) == (
        "order-manager",
        ["order", "execution", "position", "wallet"],
        "ws://127.0.0.1:9/ws/gateway/",
    )
    assert ws_gateway_unregister(subscription_id=subscription_id) is True
    assert _subscriptions(gateway) == []


def test_never_registers_in_dry_run(gateway, settings):
    settings.ENABLE_DRY_RUN = True
    assert ws_gateway_register() is None
    assert _subscriptions(gateway) == []


def test_no_gateway_configured_outside_the_simulator_is_skipped(settings):
    settings.WS_GATEWAY_HOST, settings.BYBIT_ENV, settings.ENABLE_DRY_RUN = "", "testnet", False
    assert ws_gateway_register() is None


def test_wrong_key_is_a_permanent_error_and_the_key_is_not_in_the_message(settings):
    with SimulatorServer(ws_gateway_key="the-right-key") as sim:
        settings.WS_GATEWAY_HOST, settings.WS_GATEWAY_PORT = "127.0.0.1", sim.port
        settings.WS_GATEWAY_API_KEY, settings.ENABLE_DRY_RUN = "a-wrong-key", False
        with pytest.raises(GatewayRegistrationError) as caught:
            ws_gateway_register()
    assert caught.value.retryable is False and "401" in caught.value.message
    assert "a-wrong-key" not in caught.value.message


def test_unreachable_gateway_is_retryable(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        settings.WS_GATEWAY_HOST, settings.WS_GATEWAY_PORT, settings.ENABLE_DRY_RUN = "127.0.0.1", port, False
        with pytest.raises(GatewayRegistrationError) as caught:
            ws_gateway_register()
    assert caught.value.retryable is True


def test_request_body_uses_the_callback_setting(settings):
    settings.WS_GATEWAY_CALLBACK_URL = "wss://om.example/ws/gateway/"
    assert registration_request()["callback_url"] == "wss://om.example/ws/gateway/"
