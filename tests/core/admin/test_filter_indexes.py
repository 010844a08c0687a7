"""Every back-office filter has an index PostgreSQL can use for it (EXPLAIN).

The tables here are tiny, so the planner is told that a sequential scan is
expensive (enable_seqscan = off): what remains is the proof that an index
matches the query, which for partial indexes means that the filter's WHERE
implies the index's predicate (a filter rewritten differently from the index
would silently fall back to scanning millions of rows). The timings at scale
are bench/admin_scale.py's job (docs/decisions/0510-back-office-at-scale.md).
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from exchange.models import EXCHANGE_CALL_FAILED, ExchangeCall
from orders.models import Execution, Order
from orders.selectors.executions import execution_list
from orders.selectors.orders import order_list
from signals_app.models import TradingSignal
from signals_app.selectors import signal_list

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
FILLER_ROWS = 2000

WEEK_AGO = (timezone.now() - timedelta(days=7)).isoformat()


@pytest.fixture(autouse=True)
def _analyzed_filler():
    """Old, ordinary rows that no filter below matches, then ANALYZE.

    On empty tables whose statistics say "0 rows" (autovacuum may analyze them at
    any time) the planner prices a primary-key scan and the filter's index the
    same, and the chosen plan depended on test order. Real statistics make the
    filter's index the clear choice, as it is on a real desk's tables.
    """
    from tests.exchange.factories import ExchangeCallFactory
    from tests.orders.factories import ExecutionFactory, OrderFactory
    from tests.signals_app.factories import TradingSignalFactory

    # Orders and fills are recent, so the period filters alone select everything and
    # only the strategy/type part of the index can make those queries cheap.
    old = timezone.now() - timedelta(days=30)
    Order.objects.bulk_create(OrderFactory.build_batch(FILLER_ROWS, strategy_id="filler"))
    recent = timezone.now() - timedelta(days=1)
    Execution.objects.bulk_create(ExecutionFactory.build_batch(FILLER_ROWS, order=None, exec_time=recent))
    TradingSignal.objects.bulk_create(TradingSignalFactory.build_batch(FILLER_ROWS, source="amqp"))
    ExchangeCall.objects.bulk_create(ExchangeCallFactory.build_batch(FILLER_ROWS))
    TradingSignal.objects.update(received_at=old)
    ExchangeCall.objects.update(created_at=old)
    with connection.cursor() as cursor:
        for model in (Order, Execution, TradingSignal, ExchangeCall):
            cursor.execute(f"ANALYZE {model._meta.db_table}")


def _plan(queryset) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


CASES = [
    ("order_strategy_created", lambda: order_list(filters={"strategy": "s1", "created_after": WEEK_AGO})),
    ("order_dry_run_created", lambda: Order.objects.filter(is_dry_run=True).order_by("-created_at")[:50]),
    ("order_external_created", lambda: Order.objects.filter(is_external=True).order_by("-created_at")[:50]),
    ("execution_type_time", lambda: Execution.objects.filter(exec_type="Funding").order_by("-exec_time")[:50]),
    ("execution_type_time", lambda: execution_list(filters={"exec_type": "Delivery", "exec_after": WEEK_AGO})),
    ("execution_not_ws_time", lambda: Execution.objects.filter(source="rest").order_by("-exec_time")[:50]),
    ("execution_not_ws_time", lambda: Execution.objects.filter(source="adjust").order_by("-exec_time")),
    ("signal_received_desc", lambda: signal_list(filters={"received_after": WEEK_AGO})),
    ("signal_strategy_received", lambda: TradingSignal.objects.filter(strategy_id="s1").order_by("-received_at")),
    ("signal_trace", lambda: TradingSignal.objects.filter(trace_id="abc123")),
    ("signal_not_amqp", lambda: TradingSignal.objects.filter(source="cli").order_by("-id")[:50]),
    ("signal_warmup", lambda: TradingSignal.objects.filter(is_warmup=True).order_by("-id")[:50]),
    ("exchangecall_failed_created", lambda: ExchangeCall.objects.filter(EXCHANGE_CALL_FAILED).order_by("-created_at")),
]


@pytest.mark.parametrize(("index", "query"), CASES, ids=[f"{i}-{n}" for n, (i, _) in enumerate(CASES)])
def test_the_filter_can_use_its_index(index, query):
    plan = _plan(query())
    assert index in plan, plan


def test_the_admin_failed_filter_uses_the_partial_index():
    # The admin filter and the index share one condition (exchange.models.EXCHANGE_CALL_FAILED).
    from exchange.admin import FailedFilter

    filtered = FailedFilter(None, {"outcome": ["failed"]}, ExchangeCall, None).queryset(None, ExchangeCall.objects)
    assert "exchangecall_failed_created" in _plan(filtered.order_by("-created_at")[:50])
