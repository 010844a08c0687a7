import json
import uuid
from datetime import UTC, datetime

import pytest


@pytest.fixture
def pipeline(bybit_settings, request):
    """Settings for the signal pipeline against the simulator, with every process cache cleared, and no
    backfill mark left by an earlier test's background thread (a mark sends position decisions to the
    exchange, docs/decisions/0316)."""
    from exchange.instruments import instruments_cache_clear
    from exchange.market_data import market_data_cache_clear
    from orders.services.position_mode import position_mode_forget

    bybit_settings.BYBIT_API_RETRY_BASE_DELAY = 0.01
    bybit_settings.BYBIT_API_RETRY_MAX_DELAY = 0.05
    bybit_settings.ENABLE_DRY_RUN = False
    bybit_settings.ALLOW_SHORT = False
    instruments_cache_clear()
    market_data_cache_clear()
    position_mode_forget()
    if request.node.get_closest_marker("django_db"):
        from orders.models import BackfillMark

        BackfillMark.objects.all().delete()
    yield bybit_settings
    instruments_cache_clear()
    market_data_cache_clear()
    position_mode_forget()


def signal_message(**overrides) -> dict:
    body = {
        "signal_id": str(uuid.uuid4()),
        "signal_type": "buy",
        "asset": "BTCUSDT",
        "amount": "1000",
        "confidence": 0.5,
        "timestamp": datetime.now(UTC).isoformat(),
        "strategy_id": "test",
        "trace_id": uuid.uuid4().hex[:16],
    }
    body.update(overrides)
    return body


def encode(body: dict) -> bytes:
    return json.dumps(body).encode()
