"""``OrmStatement``: an ORM query compiled once per process and bound per call (docs/decisions/0328)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import connection

from ordermanager.core.sql_once import OrmStatement
from orders.models import BackfillMark, Order

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _marks():
    for symbol, at in (("BTCUSDT", T0), ("ETHUSDT", T0 + timedelta(hours=1)), ("*", T0 + timedelta(hours=2))):
        BackfillMark.objects.create(category="linear", symbol=symbol, requested_at=at, reason=f"r-{symbol}")


def _build_counting(builds: list):
    def build(category, symbol, since):
        builds.append(symbol)
        return (BackfillMark.objects.filter(category=category, symbol__in=[symbol, "*"], requested_at__gte=since)
                .order_by("symbol").values_list("symbol", "reason"))  # fmt: skip

    return build


def test_each_call_reads_what_the_orm_query_of_its_own_values_reads():
    _marks()
    builds: list = []
    statement = OrmStatement(_build_counting(builds))
    for symbol, since in (("BTCUSDT", T0), ("ETHUSDT", T0), ("ETHUSDT", T0 + timedelta(hours=2)), ("XRPUSDT", T0)):
        expected = list(_build_counting([])(category="linear", symbol=symbol, since=since))
        assert [tuple(r) for r in statement.rows(category="linear", symbol=symbol, since=since)] == expected
    assert statement.rows(category="spot", symbol="BTCUSDT", since=T0) == []


@pytest.mark.postgres
def test_on_postgresql_the_query_is_built_once_for_every_call():
    _marks()
    builds: list = []
    statement = OrmStatement(_build_counting(builds))
    for symbol in ("BTCUSDT", "ETHUSDT", "XRPUSDT"):
        statement.rows(category="linear", symbol=symbol, since=T0)
    assert len(builds) == 1
    assert builds[0] not in ("BTCUSDT", "ETHUSDT", "XRPUSDT")  # built with a marker, not a caller's value


def test_a_decimal_slot_is_bound_apart_from_an_equal_constant():
    Order.objects.create(category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit", qty=D("2"),
                         price=D("100"), order_link_id="om-sql-once-1")  # fmt: skip
    statement = OrmStatement(lambda qty: Order.objects.filter(qty=qty, filled_qty=D("0")).values_list("order_link_id"))
    assert statement.rows(qty=D("2")) == [("om-sql-once-1",)]
    assert statement.rows(qty=D("0")) == []


@pytest.mark.postgres
def test_a_slot_hidden_inside_another_parameter_is_refused_when_compiled():
    statement = OrmStatement(lambda symbol: BackfillMark.objects.filter(symbol__contains=symbol))
    with pytest.raises(ValueError, match="inside another parameter"):
        statement.sql(symbol="BTC")


@pytest.mark.postgres
def test_a_slot_the_query_does_not_bind_is_refused_when_compiled():
    statement = OrmStatement(lambda symbol, category: BackfillMark.objects.filter(symbol=symbol))
    with pytest.raises(ValueError, match="not bound as parameters: category"):
        statement.sql(symbol="BTC", category="linear")


@pytest.mark.postgres
def test_a_slot_of_a_type_that_cannot_be_told_apart_is_refused():
    statement = OrmStatement(lambda flag: BackfillMark.objects.filter(pk__gt=0 if flag else 1))
    with pytest.raises(TypeError, match="slot flag: bool"):
        statement.sql(flag=True)


def test_an_update_binds_its_values_and_its_filter():
    for link in ("om-sql-once-a", "om-sql-once-b"):
        Order.objects.create(category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit", qty=D("2"),
                             price=D("100"), order_link_id=link)  # fmt: skip
    statement = OrmStatement(lambda pk, order_id, now: (
        Order.objects.filter(pk=pk, order_id=""), {"order_id": order_id, "submitted_at": now}))
    a, b = Order.objects.order_by("id")
    changed = [statement.run(pk=order.pk, order_id=order_id, now=T0)
               for order, order_id in ((a, "ex-1"), (b, "ex-2"), (a, "ex-3"))]
    assert changed == [1, 1, 0]
    assert list(Order.objects.order_by("id").values_list("order_id", "submitted_at")) == [
        ("ex-1", T0), ("ex-2", T0)]  # the third found a's order_id already set


def _prepared(marker: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [f"%{marker}%"])
        return cursor.fetchone()[0]


@pytest.mark.postgres
def test_a_fixed_statement_is_bound_server_side_prepared_once_and_still_seen_by_django(settings):
    from django.test.utils import CaptureQueriesContext

    from ordermanager.core.sql_once import fixed_cursor

    sql = "SELECT %s::text || 'fixed-statement-test', %s::numeric * 2"
    with CaptureQueriesContext(connection) as queries:
        for value in ("a", "b'; DROP TABLE x; --", "c"):
            with fixed_cursor() as cursor:
                cursor.execute(sql, [value, D("1.5")])
                assert cursor.fetchone() == (f"{value}fixed-statement-test", D("3.0"))
    assert _prepared("fixed-statement-test") == 1  # on this connection, once for the three calls
    assert len([q for q in queries.captured_queries if "fixed-statement-test" in q["sql"]]) == 3

    settings.DATABASE_PREPARE = False  # behind a pooler that keeps no prepared statements: the ordinary cursor
    with fixed_cursor() as cursor:
        cursor.execute("SELECT %s::text || 'unprepared-statement-test'", ["x"])
    assert _prepared("unprepared-statement-test") == 0
