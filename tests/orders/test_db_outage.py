"""The database goes away and comes back: ws-gateway messages and exchange-call audit rows written
meanwhile are kept (bounded, in order) and written when it returns; past the bound, the symbols
concerned are marked for a targeted backfill.

The database here is a private PostgreSQL server (tests/fixtures/private_pg.py) holding a copy of
the test schema; the test points Django's connection at it, then stops it (``-m immediate``, like a
crash) and starts it again. The shared server is never touched.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from exchange import audit
from exchange.models import ExchangeCall
from ordermanager.core.services import db_backlog
from orders import consumers
from orders.models import BackfillMark, Execution
from tests.orders.test_consumers import KEY, communicator, run
from tests.positions import bybit_messages as bm

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def outage_db(private_pg, settings):
    """Django's connections (every thread's) point at the private server for the test."""
    settings.WS_GATEWAY_API_KEY = KEY
    private_pg.start()
    private_pg.clone_schema(source_url=connection.settings_dict, name="om_outage")
    saved = {k: connection.settings_dict[k] for k in ("HOST", "PORT", "NAME")}
    connection.close()
    connection.settings_dict.update(private_pg.settings_for("om_outage"))  # the dict all threads share
    consumers.CONNECTIONS.__init__()
    consumers.CONNECTIONS.ever = True  # this "process" had a gateway connection before; no reconnect mark
    assert not consumers.GATEWAY_BACKLOG.pending and not audit.AUDIT_BACKLOG.pending
    try:
        yield private_pg
    finally:
        if not private_pg.running:
            private_pg.start()
        consumers.GATEWAY_BACKLOG.wait_empty(30)
        audit.AUDIT_BACKLOG.wait_empty(30)
        connection.close()
        connection.settings_dict.update(saved)
        private_pg.stop()


def _send(messages: list[dict]) -> list[dict]:
    """Send the messages on one connection, then a ping; every reply up to the pong."""

    async def scenario():
        ws = communicator()
        await ws.connect()
        for message in messages:
            await ws.send_json_to(message)
        await ws.send_json_to({"op": "ping"})
        replies = []
        while True:
            reply = await ws.receive_json_from()
            replies.append(reply)
            if reply["op"] == "pong":
                break
        await ws.disconnect()
        return replies

    return run(scenario)


def _execution(symbol: str, exec_id: str) -> dict:
    return bm.message("execution", [bm.execution_item(symbol=symbol, exec_id=exec_id)])


def test_gateway_messages_during_an_outage_are_stored_in_order_when_it_ends(outage_db):
    outage_db.stop()

    replies = _send([_execution("BTCUSDT", f"outage-{i}") for i in range(4)])

    assert replies == [{"op": "pong", "req_id": None}]  # kept, not refused: no error frame
    assert consumers.GATEWAY_BACKLOG.pending == 4
    outage_db.start()
    assert consumers.GATEWAY_BACKLOG.wait_empty(60), "the backlog was not written after the database returned"
    assert list(Execution.objects.order_by("id").values_list("exec_id", flat=True)) == [
        f"outage-{i}" for i in range(4)
    ]
    # Nothing was lost, but until they were written other processes' books lacked these fills: the symbol was
    # marked before the first of them was written, so a consumer reads the exchange's position (0316).
    mark = BackfillMark.objects.get()
    assert (mark.category, mark.symbol) == ("linear", "BTCUSDT") and "kept during a database outage" in mark.reason
    assert db_backlog.outage_seen_within(30)


def test_past_the_bound_the_symbol_is_marked_for_backfill(outage_db, settings):
    settings.DB_OUTAGE_BACKLOG_MAX = 2
    outage_db.stop()

    _send([_execution("BTCUSDT", "kept-1"), _execution("BTCUSDT", "kept-2"), _execution("ETHUSDT", "over-1")])

    outage_db.start()
    assert consumers.GATEWAY_BACKLOG.wait_empty(60)
    assert list(Execution.objects.order_by("id").values_list("exec_id", flat=True)) == ["kept-1", "kept-2"]
    marks = {m.symbol: m.reason for m in BackfillMark.objects.all()}
    assert set(marks) == {"BTCUSDT", "ETHUSDT"} and "backlog full" in marks["ETHUSDT"]
    assert "kept during a database outage" in marks["BTCUSDT"]


def test_audit_rows_during_an_outage_are_written_with_their_time_and_overflow_is_marked(outage_db, settings):
    settings.DB_OUTAGE_BACKLOG_MAX = 2
    outage_db.stop()
    before = timezone.now()

    results = [
        audit.exchange_call_record(method="POST", path=f"/v5/order/{name}", params={"category": "linear",
                                   "symbol": symbol, "api_key": "k"}, http_status=200, ret_code=0, ret_msg="OK",
                                   latency_ms=5, attempt=1, order_link_id=f"link-{name}")  # fmt: skip
        for name, symbol in (("create", "BTCUSDT"), ("amend", "BTCUSDT"), ("cancel", "SOLUSDT"))
    ]

    assert results == [None, None, None]
    outage_db.start()
    restarted = timezone.now()
    assert audit.AUDIT_BACKLOG.wait_empty(60)
    rows = list(ExchangeCall.objects.order_by("id"))
    assert [r.path for r in rows] == ["/v5/order/create", "/v5/order/amend"]
    assert all(before <= r.created_at <= restarted for r in rows)  # the time of the call, not of the write
    assert rows[0].params["api_key"] == audit.REDACTED
    mark = BackfillMark.objects.get()
    assert (mark.category, mark.symbol) == ("linear", "SOLUSDT")
