"""What one signal costs our database on its way from the inbox row to the placed order (docs/decisions/0325):
a fixed, small number of statements, each built once per process where the ORM would compile it per call."""

import traceback
from decimal import Decimal as D

import pytest
from django.db import connection
from django.db.models.sql import compiler
from django.test.utils import CaptureQueriesContext

from orders.models import LegRole, Order, OrderStatus, SignalOrderRelationship
from orders.services import fresh_position
from signals_app.models import SignalStatus
from signals_app.services.signal_processor import signal_process
from tests.core.test_outbox_many import outbox_statements
from tests.orders.reconcile.conftest import Stream
from tests.signals_app.services.test_fresh_position import run as fresh_run
from tests.signals_app.services.test_signal_processor import intake, run

pytestmark = pytest.mark.django_db


def statements(queries) -> list[str]:
    """The statements of the signal path: without the savepoints of the test's own transaction, and without
    the exchange audit rows (written by the client's audit, not by the signal path)."""
    return [q["sql"] for q in queries.captured_queries
            if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT")) and "exchange_exchangecall" not in q["sql"]]


def test_a_market_signal_takes_seven_statements_from_inbox_row_to_placed_order(pipeline, simulator):
    """The rules' read (limits, positions, exposure, open orders: one statement); the signal's `processing`, the
    order and its link; the acknowledgement, the signal's end and their two events (one outbox batch: one
    statement on PostgreSQL, docs/decisions/0333, two on SQLite)."""
    run(intake(confidence=0.95, amount="650"))  # the first signal fills the caches (instrument, ticker, balance)
    signal = intake(confidence=0.95, amount="650")
    with CaptureQueriesContext(connection) as queries:
        signal_process(signal=signal)
    assert len(statements(queries)) == 6 + outbox_statements(), "\n".join(statements(queries))
    signal.refresh_from_db()
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    order = Order.objects.get(signal_links__signal=signal)
    assert (order.status, order.order_type, order.qty, order.filled_qty, order.exchange_updated_ms) == (
        OrderStatus.NEW, "Market", D("0.01"), D("0"), 0)
    assert order.order_id and order.created_at and order.submitted_at and not order.is_external
    link = SignalOrderRelationship.objects.get(signal=signal)
    assert (link.order_id, link.allocation_amount, link.role) == (order.pk, D("650"), LegRole.OPEN)
    assert link.created_at is not None


@pytest.mark.postgres  # the embedded SQLite builds its statements per call (ordermanager.core.sql_once)
@pytest.mark.django_db(transaction=True)  # the fills are delivered by another thread, on its own connection
def test_a_decision_waiting_for_fills_builds_its_poll_once_and_only_runs_it(pipeline, simulator, monkeypatch):
    """The fresh-position wait (decision 0316) polls every 50 ms; each poll runs one statement compiled when the
    wait began instead of building the annotated query again (the ORM's compile was most of a poll's CPU)."""
    pipeline.POSITION_FILLS_WAIT_SECONDS = 10.0  # the fills come long before that
    stream = Stream(simulator.engine)  # delivered, but only when pumped
    assert fresh_run("buy").status == SignalStatus.EXECUTED
    built, real = [], fresh_position._unsettled_query
    monkeypatch.setattr(fresh_position, "_unsettled_query", lambda **kw: built.append(kw) or real(**kw))
    for statement in (fresh_position._UNSETTLED_ONE, fresh_position._UNSETTLED_ROWS):
        monkeypatch.setattr(statement, "_compiled", {})  # as in a new process
    before = fresh_position.position_path_counts()

    with CaptureQueriesContext(connection) as queries:
        sell = stream.pumped_during(0.4, lambda: fresh_run("sell"))
    assert sell.status == SignalStatus.EXECUTED, sell.reason
    after = fresh_position.position_path_counts()
    assert after[fresh_position.WAITED] == before[fresh_position.WAITED] + 1  # decided on the book, after waiting
    polls = [q for q in queries.captured_queries if '"filled_qty" > ("orders_order"."booked_qty")' in q["sql"]]
    assert len(polls) >= 4, len(polls)  # the doubts' read and at least 3 polls (0.4 s at 50 ms)
    # None of them sums executions: each order's booked quantity is a column of its row (0336), so a check
    # costs the same whatever the number of the symbol's recent orders.
    assert not [q["sql"] for q in queries.captured_queries if '"orders_execution"' in q["sql"]]
    # Compiled once per process for the doubts' read and once for the polls; none is built per wait or per poll
    # (decision 0328; before it, once for every wait, and before 0325 once for every poll).
    assert sorted(kw["limit"] for kw in built) == [1, 20]


@pytest.mark.postgres  # the embedded SQLite builds its statements per call (ordermanager.core.sql_once)
def test_the_freshness_checks_are_built_once_per_process_not_per_decision(monkeypatch):
    """Every position-dependent decision reads the book's doubts (backfill marks, unknown outcomes, unsettled
    orders); each of its statements is compiled by the ORM once per process, not once per decision (0328)."""
    built, real = [], fresh_position._unsettled_query
    monkeypatch.setattr(fresh_position, "_unsettled_query", lambda **kw: built.append(kw) or real(**kw))
    for statement in (fresh_position._UNSETTLED_ONE, fresh_position._UNSETTLED_ROWS, fresh_position._MARKED,
                      fresh_position._UNACKED_ONE):  # fmt: skip
        monkeypatch.setattr(statement, "_compiled", {})  # as in a new process
    for symbol in ("BTCUSDT", "ETHUSDT", "BTCUSDT"):
        assert fresh_position.book_doubts(category="linear", symbol=symbol) == ([], [])
        assert fresh_position._unsettled_poll(category="linear", symbol=symbol)() is False
    assert sorted(kw["limit"] for kw in built) == [1, 20]


@pytest.mark.postgres  # the embedded SQLite builds its statements per call (ordermanager.core.sql_once)
def test_after_the_first_signal_the_path_compiles_no_orm_query_but_the_exchange_audit(pipeline, simulator, monkeypatch):
    """Each statement of the signal path is built once per process (prebuilt SQL or ``OrmStatement``, 0325/0328):
    the ORM's compile of a query costs more CPU than its round trip. (The exchange audit row is written by the
    audit spool's batches in the service; in the tests it is written inline.)"""
    run(intake(confidence=0.95, amount="650"))
    run(intake(confidence=0.95, amount="650"))  # compiles what the first one left to compile
    signal = intake(confidence=0.95, amount="650")
    compiled = []
    with monkeypatch.context() as patched:
        for cls in (compiler.SQLCompiler, compiler.SQLUpdateCompiler, compiler.SQLInsertCompiler):
            patched.setattr(cls, "as_sql", _recording(cls.as_sql, compiled))
        signal_process(signal=signal)
    signal.refresh_from_db()
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert [where for where in compiled if "exchange/audit.py" not in where] == []
    assert compiled  # the audit row's insert was seen: the recording works


def _recording(as_sql, compiled: list):
    def recorded(self, *args, **kwargs):
        ours = [f for f in traceback.extract_stack()[:-1] if "site-packages" not in f.filename]
        compiled.append(" > ".join(f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno}" for f in ours[-5:]))
        return as_sql(self, *args, **kwargs)

    return recorded
