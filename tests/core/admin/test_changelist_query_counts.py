"""Every admin changelist and the main API lists answer with a bounded number of queries.

Seeded with many rows per table; the bound must not depend on the row count
(no N+1), and no full COUNT(*) runs (capped count + show_full_result_count=False).
"""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exchange.models import ExchangeCall
from ordermanager.core.services.audit import audit_record
from tests.orders.factories import (
    DiscrepancyFactory,
    ExecutionFactory,
    RiskLimitFactory,
    SignalOrderRelationshipFactory,
)
from tests.positions.factories import PositionFactory, PositionSnapshotFactory

pytestmark = pytest.mark.django_db
ROWS = 30


@pytest.fixture
def seeded(db):
    for _ in range(ROWS):
        link = SignalOrderRelationshipFactory()
        ExecutionFactory(order=link.order)
        ExecutionFactory(order=link.order, exec_qty=Decimal("0"))
    for i in range(ROWS // 3):
        PositionSnapshotFactory(position=PositionFactory(symbol=f"S{i}USDT"))
        ExchangeCall.objects.create(method="GET", path="/v5/order/realtime", http_status=200, ret_code=0)
        DiscrepancyFactory()
    limit = RiskLimitFactory(symbol="")
    audit_record(action="risk_limit.update", target=limit, changes={"x": {"before": 1, "after": 2}})


CHANGELISTS = [
    "orders/order", "orders/execution", "orders/signalorderrelationship", "orders/risklimit",
    "orders/reconciliationrun", "orders/discrepancy", "positions/position", "positions/positionsnapshot",
    "positions/positionledgerentry", "positions/positiondiscrepancy", "signals_app/tradingsignal",
    "exchange/exchangecall", "exchange/instrument", "core/auditentry", "core/heartbeat", "core/apikey",
]  # fmt: skip
MAX_QUERIES = 14  # session, user, permissions, the page's rows, a capped count, filter choices; never per row


@pytest.mark.parametrize("model", CHANGELISTS)
def test_admin_changelist_is_bounded(client, risk_admin, seeded, model):
    client.force_login(risk_admin)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/admin/{model}/")
    assert response.status_code == 200
    assert len(queries) <= MAX_QUERIES, "\n".join(q["sql"][:200] for q in queries.captured_queries)
    # No unbounded COUNT: every COUNT is over a LIMITed subquery.
    for q in queries.captured_queries:
        sql = q["sql"].upper()
        if "COUNT(" in sql and "_ORDER" in sql.replace('"', ""):
            assert "LIMIT" in sql, sql


API_LISTS = ["/api/orders/", "/api/executions/", "/api/signals/", "/api/positions/", "/api/reconciliation-runs/",
             "/api/risk-limits/"]  # fmt: skip


@pytest.mark.parametrize("url", API_LISTS)
def test_api_list_is_bounded(api_client, risk_staff, seeded, url, django_assert_max_num_queries):
    client = api_client(risk_staff)
    with django_assert_max_num_queries(8):
        response = client.get(url)
    assert response.status_code == 200


def test_order_list_queries_do_not_grow_with_rows(api_client, risk_staff, seeded):
    client = api_client(risk_staff)
    with CaptureQueriesContext(connection) as small:
        client.get("/api/orders/?page_size=5")
    with CaptureQueriesContext(connection) as large:
        client.get("/api/orders/?page_size=50")
    assert len(small) == len(large)


def test_order_changelist_queries_do_not_grow_with_rows(client, risk_admin, seeded):
    client.force_login(risk_admin)
    client.get("/admin/orders/order/")  # warm caches (content types, ...)
    with CaptureQueriesContext(connection) as before:
        client.get("/admin/orders/order/")
    for _ in range(20):
        SignalOrderRelationshipFactory()
    with CaptureQueriesContext(connection) as after:
        client.get("/admin/orders/order/")
    assert len(before) == len(after)


def test_dashboard_is_bounded(client, risk_staff, seeded, django_assert_max_num_queries):
    client.force_login(risk_staff)
    with django_assert_max_num_queries(60):
        assert client.get("/admin/dashboard/").status_code == 200
