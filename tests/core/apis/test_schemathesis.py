"""Property-based run of every documented operation against the app: no input makes it answer 5xx.

Bounded (a few examples per operation) so the whole run stays around a minute; it
calls the real WSGI app in-process with an API key of a superuser, on the test DB.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from ordermanager.core.services.api_keys import api_key_create
from tests.orders.factories import OrderFactory, RiskLimitFactory
from tests.positions.factories import PositionSnapshotFactory
from tests.signals_app.factories import TradingSignalFactory


@pytest.fixture
def auth_headers(risk_admin):
    RiskLimitFactory(symbol="")
    OrderFactory()
    TradingSignalFactory()
    PositionSnapshotFactory()
    _, raw = api_key_create(user=risk_admin, name="schemathesis")
    return {"Authorization": f"Api-Key {raw}"}


schema = schemathesis.pytest.from_fixture("api_schema")


# One test over every operation: on two workers beside the rest of the suite it has come within a few seconds
# of the suite's 300 s per-test limit; the examples are bounded above, so a longer limit changes no assertion.
@pytest.mark.timeout(600)
@schema.parametrize()
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_input_makes_the_api_fail(case, auth_headers, bybit_settings, monkeypatch):
    # Never reach a real exchange or queue a real job from generated input: exchange calls (cancel,
    # POST /api/reconcile/) go to the simulator, jobs are swallowed.
    bybit_settings.BYBIT_API_RETRY_MAX_ATTEMPTS = 1
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: "queued")
    response = case.call(headers=auth_headers)
    case.validate_response(response, checks=[not_a_server_error])
