"""The decision's book read finds the open orders through the partial index of active orders, also when the
planner's statistics are behind the table (docs/decisions/0337).

The read (``risk.book_state_read``) sums the resting orders of every other symbol for the exposure limit. In
the signal bench the orders table grew by thousands of rows a minute and its statistics still counted two
orders in five open: the planner scanned the whole table for each decision (1.7 ms at 3,000 orders, 15.8 ms per call
under the burst, and growing with the table). Here the same state is made on purpose: half the orders
open, ANALYZE, then all of them filled without a new ANALYZE.
"""

import pytest
from django.db import connection

from orders.models import Order, OrderStatus
from orders.services.risk import _book_sql, book_state_read
from tests.orders.factories import OrderFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
STALE_ROWS = 3000


@pytest.fixture
def statistics_count_filled_orders_open():
    symbols = [f"S{i:02d}USDT" for i in range(20)]
    Order.objects.bulk_create(
        OrderFactory.build(
            symbol=symbols[i % 20],
            status=OrderStatus.NEW if i % 2 == 0 else OrderStatus.FILLED,
            order_link_id=f"stale-{i}",
            order_id=f"x-{i}",
        )
        for i in range(STALE_ROWS)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Order._meta.db_table}")
    Order.objects.filter(status=OrderStatus.NEW).update(status=OrderStatus.FILLED)


def _plan(symbol: str) -> str:
    from django.conf import settings

    sql = _book_sql(settings.CANCEL_PARTIALLY_FILLED_ORDERS)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, ["linear", symbol] * 7 + [symbol])
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_book_read_never_scans_every_order(statistics_count_filled_orders_open):
    plan = _plan("BTCUSDT")
    assert f"Seq Scan on {Order._meta.db_table}" not in plan, plan
    assert "order_active_symbol" in plan, plan


def test_the_read_still_counts_what_rests(statistics_count_filled_orders_open):
    """The index holds exactly the orders the read counts: a resting order of another symbol is still at
    stake, one that has filled is not."""
    OrderFactory(
        symbol="ETHUSDT", side="Buy", qty="2", price="100", status=OrderStatus.PARTIALLY_FILLED, filled_qty="1"
    )
    OrderFactory(symbol="SOLUSDT", side="Sell", qty="3", price="10", status=OrderStatus.FILLED, filled_qty="3")
    assert book_state_read(symbol="BTCUSDT").exposure_other == 100
