"""A decision waiting for a symbol's fills is woken when the fill path commits for the symbol (0327)."""

import threading
import time
from decimal import Decimal as D

import psycopg
import pytest
from django.db import connection, transaction

from orders.services import fill_wakeups, fresh_position
from orders.services.fills import private_message_apply
from signals_app.models import SignalStatus
from signals_app.services import signal_processor
from signals_app.services.signal_processor import SignalProcessor
from tests.orders.factories import OrderFactory
from tests.orders.reconcile.conftest import Stream
from tests.orders.services.test_fills import _fills_message
from tests.signals_app.e2e.harness import wait_until
from tests.signals_app.services.test_fresh_position import counts, delta, run


def _listen_connection():
    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"],
              "port": db["PORT"]}  # fmt: skip
    conn = psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True)
    conn.execute(f"LISTEN {fill_wakeups.CHANNEL}")
    return conn


def test_a_wait_returns_on_an_announcement_for_its_symbol_or_for_any_and_not_for_another():
    mark = fill_wakeups.booked_mark("AAAUSDT")
    fill_wakeups.fills_booked(["BBBUSDT"])
    assert fill_wakeups.booked_wait("AAAUSDT", mark, 0.01) is False
    threading.Timer(0.05, fill_wakeups.fills_booked, args=(["AAAUSDT"],)).start()
    started = time.monotonic()
    assert fill_wakeups.booked_wait("AAAUSDT", mark, 5.0) is True
    assert time.monotonic() - started < 2.0
    mark = fill_wakeups.booked_mark("AAAUSDT")
    fill_wakeups.fills_booked_notice("")  # a NOTIFY too long to name its symbols wakes every waiter
    assert fill_wakeups.booked_wait("AAAUSDT", mark, 0.01) is True


@pytest.mark.django_db(transaction=True)
def test_fills_that_arrive_while_the_decision_waits_wake_it_long_before_its_next_poll(pipeline, simulator, monkeypatch):
    pipeline.POSITION_FILLS_WAIT_SECONDS = 20.0
    monkeypatch.setattr(fresh_position, "POLL_SECONDS", 10.0)  # a poll would come only after 10 s
    stream = Stream(simulator.engine)  # delivered, but only when pumped
    assert run("buy").status == SignalStatus.EXECUTED
    before = counts()

    started = time.monotonic()
    sell = stream.pumped_during(0.3, lambda: run("sell"))
    took = time.monotonic() - started
    assert sell.status == SignalStatus.EXECUTED, sell.reason
    assert delta(before) == {fresh_position.WAITED: 1}
    assert took < 5.0, f"the decision waited {took:.1f} s: it was not woken by the fills' commit"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_fill_path_announces_its_symbols_to_every_process_when_it_commits_and_not_when_it_rolls_back():
    order = OrderFactory(qty=D("1"))  # its fills message is for BTCUSDT
    with _listen_connection() as listener:
        with pytest.raises(RuntimeError), transaction.atomic():
            private_message_apply(message=_fills_message(order, 1, start_seq=1))
            raise RuntimeError("rolled back")
        assert list(listener.notifies(timeout=0.3, stop_after=1)) == []
        private_message_apply(message=_fills_message(order, 1, start_seq=1))
        [notice] = list(listener.notifies(timeout=5.0, stop_after=1))
    assert notice.channel == fill_wakeups.CHANNEL and notice.payload.split() == ["BTCUSDT"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_processor_listener_turns_another_process_notice_into_a_wake_up(monkeypatch):
    monkeypatch.setattr(signal_processor, "symbols_with_work", lambda: [])
    processor = SignalProcessor(threads=1, poll_interval=30.0)
    mark = fill_wakeups.booked_mark("SOLUSDT")
    processor.start()
    try:
        with _listen_connection() as other:  # another process's fill transaction, as PostgreSQL delivers it
            def notified() -> bool:
                other.execute("SELECT pg_notify(%s, %s)", [fill_wakeups.CHANNEL, "SOLUSDT XRPUSDT"])
                return fill_wakeups.booked_wait("SOLUSDT", mark, 0.2)

            wait_until(notified, timeout=15, what="the listener woke the SOLUSDT waiters")
    finally:
        processor.stop()
        processor.join(10)
