"""Registration of our private-stream subscription with ws-gateway's management API.

The request (docs/decisions/0403-ws-gateway-registration.md)::

    POST http://{WS_GATEWAY_HOST}:{WS_GATEWAY_PORT}/ws-gateway/api/v1/subscriptions
    X-API-Key: {WS_GATEWAY_API_KEY}
    Content-Type: application/json
    {"subscriber": "order-manager", "topics": ["order", "execution", "position", "wallet"],
     "callback_url": "{WS_GATEWAY_CALLBACK_URL}"}
    → 201 {"id": "...", "topics": [...]}    401 bad key    400 bad body

ws-gateway then connects to ``callback_url`` (our ``ws/gateway/`` endpoint) with
the same key and pushes every private message. ``DELETE .../subscriptions/{id}``
ends it. Never in dry-run: a dry-run instance places no orders, and must not
consume (and so compete for) the live account's fills. With BYBIT_ENV=simulator
and no WS_GATEWAY_HOST, the simulator plays ws-gateway.
"""

from __future__ import annotations

import httpx
import structlog
from django.conf import settings

from ordermanager.core.exceptions import ServiceUnavailable

log = structlog.get_logger(__name__)

SUBSCRIBER = "order-manager"
TOPICS = ["order", "execution", "position", "wallet"]
PATH = "/ws-gateway/api/v1/subscriptions"
TIMEOUT = 5.0


class GatewayRegistrationError(ServiceUnavailable):
    """ws-gateway refused or could not be reached. ``retryable`` is False for a wrong key or body."""

    code = "ws_gateway_registration_failed"

    def __init__(self, message: str, *, retryable: bool, status: int | None = None):
        super().__init__(message, extra={"status": status})
        self.retryable = retryable


def gateway_base_url() -> str:
    """http://host:port of ws-gateway's management API, or "" when none is configured."""
    if settings.WS_GATEWAY_HOST:
        return f"http://{settings.WS_GATEWAY_HOST}:{settings.WS_GATEWAY_PORT}"
    if settings.BYBIT_ENV == "simulator":
        return f"http://{settings.SIMULATOR_HOST}:{settings.SIMULATOR_PORT}"
    return ""


def registration_request() -> dict:
    """The JSON body we send (also shown by ``start_ingest --show``)."""
    return {"subscriber": SUBSCRIBER, "topics": list(TOPICS), "callback_url": settings.WS_GATEWAY_CALLBACK_URL}


def ws_gateway_register(*, transport: httpx.BaseTransport | None = None) -> str | None:
    """Register our subscription; returns its id, or None when skipped (dry-run, no gateway configured).

    Raises ``GatewayRegistrationError`` when ws-gateway refuses or cannot be reached.
    The key is sent only in the header and never logged.
    """
    if settings.ENABLE_DRY_RUN:
        log.info("[DRY-RUN] ws-gateway registration skipped: a dry-run instance does not consume live fills")
        return None
    base = gateway_base_url()
    if not base:
        log.warning("ws_gateway_not_configured", hint="set WS_GATEWAY_HOST/WS_GATEWAY_PORT")
        return None
    if not settings.WS_GATEWAY_API_KEY:
        raise GatewayRegistrationError("WS_GATEWAY_API_KEY is empty; ws-gateway needs it", retryable=False)
    body = registration_request()
    try:
        with httpx.Client(timeout=TIMEOUT, transport=transport) as client:
            response = client.post(base + PATH, json=body, headers={"X-API-Key": settings.WS_GATEWAY_API_KEY})
    except httpx.HTTPError as exc:
        raise GatewayRegistrationError(f"ws-gateway at {base} unreachable: {exc.__class__.__name__}", retryable=True)
    subscription_id = _subscription_id(response, base)
    log.info("ws_gateway_registered", gateway=base, subscription_id=subscription_id, **body)
    return subscription_id


def ws_gateway_unregister(*, subscription_id: str, transport: httpx.BaseTransport | None = None) -> bool:
    """End a subscription (shutdown); False when the gateway does not know it or cannot be reached."""
    base = gateway_base_url()
    if not base or not subscription_id:
        return False
    try:
        with httpx.Client(timeout=TIMEOUT, transport=transport) as client:
            response = client.delete(
                f"{base}{PATH}/{subscription_id}", headers={"X-API-Key": settings.WS_GATEWAY_API_KEY}
            )
    except httpx.HTTPError as exc:
        log.warning("ws_gateway_unregister_failed", error=exc.__class__.__name__)
        return False
    return response.status_code in (200, 204)


def _subscription_id(response: httpx.Response, base: str) -> str:
    status = response.status_code
    if status in (200, 201):
        try:
            return str(response.json()["id"])
        except (ValueError, KeyError, TypeError):
            raise GatewayRegistrationError("ws-gateway answered without a subscription id", retryable=True)
    if status == 401:
        raise GatewayRegistrationError("ws-gateway refused WS_GATEWAY_API_KEY (401)", retryable=False, status=401)
    if status == 400:
        raise GatewayRegistrationError(
            f"ws-gateway refused the request (400): {response.text[:200]}", retryable=False, status=400
        )
    raise GatewayRegistrationError(f"ws-gateway at {base} answered HTTP {status}", retryable=True, status=status)
