"""The fill path's order lookup reads only the executions that could be that order's, not every execution without
an order (docs/decisions/0338).

Each order event locks its order row and asks, in the same statement, whether executions wait for it (stored
before the order was known). Funding fees are executions that never belong to an order, so they pile up with
order = NULL: three a day per symbol with a position. The check used to walk all of them through the foreign
key's index (``order_id IS NULL``): 5,015 rows and 5-13 ms on every order event on `bench/admin_scale.py`'s
year of history. It runs as a prepared statement, so its generic plan is the one that counts.
"""

import psycopg
import pytest
from django.db import connection, transaction

from orders.models import Execution
from orders.services.fills.order_state import (
    _locked_for_event_sql,
    _orders_awaited_sql,
    order_locked_for_event,
    orders_awaited,
)
from tests.orders.factories import ExecutionFactory, OrderFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
FUNDING_ROWS = 3000


@pytest.fixture
def a_year_of_funding():
    Execution.objects.bulk_create(
        ExecutionFactory.build(order=None, exec_type="Funding", exec_id=f"funding-{i}", symbol=f"S{i % 20:02d}USDT")
        for i in range(FUNDING_ROWS)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Execution._meta.db_table}")


def _executions_read(plan: dict) -> int:
    """Rows of the executions table that the plan's scans looked at (kept or filtered out)."""
    read = 0
    if plan.get("Relation Name") == Execution._meta.db_table:
        read += plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
        read += plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
    return read + sum(_executions_read(child) for child in plan.get("Plans", []))


def _read_by_lookup(order, mode: str) -> int:
    """The rows of executions read by the lookup, planned as ``mode`` says. The values are bound server side, as
    the fill path's prepared statement binds them (Django's own cursor would write them into the text)."""
    by_link, _ = _locked_for_event_sql()
    return _read_by(by_link, [order.order_id, order.order_id, order.order_link_id], mode)


def _read_by(sql: str, params: list, mode: str) -> int:
    with transaction.atomic():
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(f"SET LOCAL plan_cache_mode = {mode}")
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            return _executions_read(cursor.fetchone()[0][0]["Plan"])


@pytest.mark.parametrize("mode", ["force_generic_plan", "force_custom_plan"])
def test_the_order_lookup_skips_funding_fees(a_year_of_funding, mode):
    order = OrderFactory(symbol="S01USDT")
    ExecutionFactory(order=order)  # linked: not an orphan
    assert _read_by_lookup(order, mode) < 10


@pytest.mark.parametrize("mode", ["force_generic_plan", "force_custom_plan"])
def test_a_groups_check_for_waiting_executions_skips_funding_fees(a_year_of_funding, mode):
    """A group of messages asks once for all its orders (docs/decisions/0339), by the same two keys."""
    params = [[f"ex-{i}" for i in range(50)], [f"om-link-{i}" for i in range(50)]]
    assert _read_by(_orders_awaited_sql(), params, mode) < 10


def test_the_lookup_still_finds_executions_that_wait_for_the_order(a_year_of_funding):
    by_id = OrderFactory(symbol="S01USDT", order_link_id="", order_id="ex-1")
    by_link = OrderFactory(symbol="S02USDT", order_link_id="om-link-2", order_id="")
    external = OrderFactory(symbol="S03USDT", order_link_id="their-link", order_id="ex-3", is_external=True)
    alone = OrderFactory(symbol="S04USDT", order_link_id="om-link-4", order_id="ex-4")
    ExecutionFactory(order=None, exchange_order_id="ex-1", order_link_id="")
    ExecutionFactory(order=None, exchange_order_id="ex-2", order_link_id="om-link-2")
    ExecutionFactory(order=None, exchange_order_id="", order_link_id="their-link")  # by link: not for external
    with transaction.atomic():
        assert order_locked_for_event(order_link_id="", order_id="ex-1") == (by_id, True)
        # The event carries the orderId the row does not have yet: found by our link, waiting by either key.
        assert order_locked_for_event(order_link_id="om-link-2", order_id="ex-2") == (by_link, True)
        assert order_locked_for_event(order_link_id="their-link", order_id="ex-3") == (external, False)
        assert order_locked_for_event(order_link_id="om-link-4", order_id="ex-4") == (alone, False)
        # A group's check, for the same events at once: the exchange orderIds and our links that executions wait for.
        assert orders_awaited([(by_id, ""), (by_link, "ex-2"), (external, ""), (alone, "")]) == (
            {"ex-1", "ex-2"},
            {"om-link-2"},
        )
