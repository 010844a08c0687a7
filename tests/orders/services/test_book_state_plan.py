"""The decision's book read can find every order it counts through the partial index of active orders
(docs/decisions/0337).

The read (``risk.book_state_read``) sums the resting orders of every other symbol for the exposure limit. In the
signal bench the orders table grew by thousands of rows a minute. Its statistics still counted two orders in five
open, and the planner scanned the whole table for each decision (1.7 ms at 3,000 orders, 15.8 ms per call under
the burst, growing with the table). The partial index holds only the open orders, so it stays small, and reading
it costs little whatever the statistics say.

Which index PostgreSQL picks among several usable ones depends on its estimates, and a test of that choice
would be a coin toss. So the other indexes on orders are dropped inside the test's transaction (rolled back
with it), and sequential scans are priced out. What remains is what the index must guarantee: each of the
read's order conditions implies the index's predicate. A status list written differently from the index's
would silently lose it.
"""

import pytest
from django.conf import settings
from django.db import connection

from orders.models import Order, OrderStatus
from orders.services.risk import _book_sql, book_state_read
from tests.orders.factories import OrderFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _plan_with_only_the_partial_index(symbol: str) -> str:
    table = Order._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname <> 'order_active_symbol' "
            "AND indexdef NOT LIKE 'CREATE UNIQUE INDEX%%'",
            [table],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN " + _book_sql(settings.CANCEL_PARTIALLY_FILLED_ORDERS), ["linear", symbol] * 7 + [symbol]
        )
        return "\n".join(row[0] for row in cursor.fetchall())


def test_every_order_condition_of_the_book_read_is_served_by_the_partial_index():
    OrderFactory(symbol="ETHUSDT", status=OrderStatus.NEW)
    plan = _plan_with_only_the_partial_index("BTCUSDT")
    assert f"Seq Scan on {Order._meta.db_table}" not in plan, plan
    # The exposure over other symbols, this symbol's resting orders, and whether any order is cancellable.
    assert plan.count("order_active_symbol") == 3, plan


def test_the_read_counts_what_rests_and_not_what_filled():
    """The index holds exactly the orders the read counts: a resting order of another symbol is still at
    stake, one that has filled is not."""
    OrderFactory(
        symbol="ETHUSDT", side="Buy", qty="2", price="100", status=OrderStatus.PARTIALLY_FILLED, filled_qty="1"
    )
    OrderFactory(symbol="SOLUSDT", side="Sell", qty="3", price="10", status=OrderStatus.FILLED, filled_qty="3")
    OrderFactory(symbol="XRPUSDT", side="Sell", qty="3", price="10", status=OrderStatus.CANCELLED)
    assert book_state_read(symbol="BTCUSDT").exposure_other == 100
