"""The transactional outbox: rows with the change, ids and per-aggregate sequences, schemas, lag, prune, admin."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import jsonschema
import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from ordermanager import events
from ordermanager.core.models import OutboxEvent
from ordermanager.dashboard.selectors import health_components
from ordermanager.events import ORDER_UPDATED, POSITION_LOSS_WARNING, POSITION_UPDATED, RISK_LIMIT_CHANGED
from ordermanager.outbox import SCHEMA_DIR, EventSchemaError, event_validate, outbox_lag, outbox_prune, outbox_unsent

pytestmark = pytest.mark.django_db

ROUTING_KEYS = sorted(
    {value for name, value in vars(events).items() if name.isupper() and isinstance(value, str) and "." in value}
    | {ORDER_UPDATED, RISK_LIMIT_CHANGED, POSITION_UPDATED, POSITION_LOSS_WARNING}
)


def order_event(link="link-1", status="new", **extra):
    return {"order_link_id": link, "order_id": "", "symbol": "BTCUSDT", "side": "Buy", "order_type": "Market",
            "time_in_force": "IOC", "qty": "0.010", "price": None, "reduce_only": False, "status": status, "leg": 0,
            "strategy_id": "s", "trace_id": "t", "reject_code": None, "reject_reason": "", **extra}


def test_every_event_type_has_a_valid_json_schema_and_no_schema_is_orphaned():
    files = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert set(ROUTING_KEYS) == files
    for key in ROUTING_KEYS:
        schema = json.loads((SCHEMA_DIR / f"{key}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["event"] == {"const": key}
        assert {"event_id", "aggregate_type", "aggregate_id", "sequence"} <= set(schema["required"])


def test_an_event_is_a_row_of_the_transaction_that_made_the_change():
    with transaction.atomic():
        events.publish_event_on_commit(routing_key=events.ORDER_CREATED, payload=order_event(resolved_existing=False))
        assert OutboxEvent.objects.count() == 1  # written now, not after commit
    row = OutboxEvent.objects.get()
    assert (row.routing_key, row.aggregate_type, row.aggregate_id, row.sequence, row.sent_at) == (
        "order.created", "order", "link-1", 1, None)
    assert row.payload["event_id"] == str(row.event_id) and row.payload["sequence"] == 1
    assert row.payload["qty"] == "0.010"  # money as exact strings on the wire

    with pytest.raises(RuntimeError), transaction.atomic():
        events.publish_event_on_commit(routing_key=events.ORDER_FAILED, payload=order_event(status="failed"))
        raise RuntimeError("the change fails")
    assert OutboxEvent.objects.count() == 1  # rolled back with it


def test_the_relay_reads_each_unsent_event_as_the_json_text_it_publishes_with_its_trace_id():
    """The relay sends the stored JSON text as it is (docs/decisions/0334): it is the event, money still as
    exact strings, the sequence in it; the trace id comes apart for the headers."""
    with transaction.atomic():
        events.publish_event_on_commit(routing_key=events.ORDER_CREATED, payload=order_event(resolved_existing=False))
        events.publish_event_on_commit(routing_key=events.ORDER_CREATED, payload=order_event(link="link-2",
                                       trace_id="", resolved_existing=False))  # fmt: skip
    OutboxEvent.objects.filter(aggregate_id="link-2").update(sent_at=timezone.now())
    events.publish_event_on_commit(routing_key=events.ORDER_FAILED, payload=order_event(status="failed"))

    rows = outbox_unsent(10)

    stored = list(OutboxEvent.objects.filter(sent_at__isnull=True).order_by("id"))
    assert [(r[0], r[1], str(r[2])) for r in rows] == [(e.pk, e.routing_key, str(e.event_id)) for e in stored]
    assert [json.loads(r[3]) for r in rows] == [e.payload for e in stored]
    assert [json.loads(r[3])["sequence"] for r in rows] == [1, 2] and json.loads(rows[0][3])["qty"] == "0.010"
    assert [r[4] for r in rows] == ["t", "t"]
    assert len(outbox_unsent(1)) == 1


def test_each_aggregate_numbers_its_events_one_two_three():
    for status in ("new", "filled"):
        events.publish_event_on_commit(routing_key=events.ORDER_CREATED,
                                       payload=order_event(link="a", status=status, resolved_existing=False))
    events.publish_event_on_commit(routing_key=events.ORDER_CREATED,
                                   payload=order_event(link="b", resolved_existing=False))
    events.publish_event_on_commit(routing_key=events.SIGNAL_REJECTED,
                                   payload={"signal_id": None, "reason": "not JSON", "source": "amqp"})
    rows = list(OutboxEvent.objects.order_by("id").values_list("aggregate_type", "aggregate_id", "sequence"))
    assert rows[:3] == [("order", "a", 1), ("order", "a", 2), ("order", "b", 1)]
    signal_row = OutboxEvent.objects.get(routing_key="signal.rejected")
    # No signal id: the event is an aggregate of its own.
    assert (signal_row.aggregate_type, signal_row.aggregate_id, signal_row.sequence) == (
        "signal", str(signal_row.event_id), 1)
    assert len(set(OutboxEvent.objects.values_list("event_id", flat=True))) == 4


def test_an_event_that_does_not_match_its_schema_is_refused_with_the_field_named():
    with pytest.raises(EventSchemaError, match=r"event order.created: qty: 12 is not of type 'string'"):
        event_validate("order.created", {**order_event(qty=12, resolved_existing=True), "event_id": str(uuid.uuid4()),
                                         "event": "order.created", "occurred_at": "2026-01-01T00:00:00Z",
                                         "aggregate_type": "order", "aggregate_id": "x", "sequence": 1})
    with pytest.raises(EventSchemaError, match="no JSON Schema for event 'order.exploded'"):
        event_validate("order.exploded", {})
    with pytest.raises(EventSchemaError):  # validation is on in the test settings: bad events never get stored
        events.publish_event_on_commit(routing_key=events.ORDER_CREATED, payload=order_event())  # no resolved_existing
    assert not OutboxEvent.objects.exists()


def test_health_reports_the_outbox_lag(settings):
    settings.SIGNAL_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"
    now = timezone.now()
    assert _outbox(now).status == "ok" and "lag 0 s" in _outbox(now).detail
    events.publish_event_on_commit(routing_key=events.ORDER_CREATED, payload=order_event(resolved_existing=False))
    OutboxEvent.objects.update(created_at=now - timedelta(seconds=90))
    component = _outbox(now)
    assert component.status == "stale" and component.detail == "lag 90.0 s: 1 unsent event(s), oldest 90.0 s"
    assert outbox_lag(now=now) == (90.0, 1)
    OutboxEvent.objects.update(sent_at=now)
    assert _outbox(now).status == "ok"
    settings.SIGNAL_BROKER_URL = ""  # no broker: nothing is ever sent, the events stay for the admin
    OutboxEvent.objects.update(sent_at=None)
    assert _outbox(now).status == "ok" and "no broker: 1 event(s) kept in the outbox" in _outbox(now).detail


def _outbox(now):
    return next(c for c in health_components(now=now) if c.name == "outbox")


def test_old_events_are_pruned_unsent_ones_only_without_a_broker(settings):
    settings.SIGNAL_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"
    settings.OUTBOX_RETENTION_HOURS = 24
    now = timezone.now()
    for link in ("old-sent", "old-unsent", "new-sent"):
        events.publish_event_on_commit(routing_key=events.ORDER_CREATED,
                                       payload=order_event(link=link, resolved_existing=False))
    OutboxEvent.objects.filter(aggregate_id__startswith="old").update(created_at=now - timedelta(hours=25))
    OutboxEvent.objects.exclude(aggregate_id="old-unsent").update(sent_at=now)
    assert outbox_prune(now=now) == 1
    assert set(OutboxEvent.objects.values_list("aggregate_id", flat=True)) == {"old-unsent", "new-sent"}
    settings.SIGNAL_BROKER_URL = ""
    assert outbox_prune(now=now) == 1
    assert list(OutboxEvent.objects.values_list("aggregate_id", flat=True)) == ["new-sent"]


def test_without_a_broker_events_are_kept_and_shown_in_the_admin(client, risk_staff, settings):
    settings.SIGNAL_BROKER_URL = ""
    events.publish_event_on_commit(routing_key=events.ORDER_CREATED,
                                   payload=order_event(link="shown-in-admin", resolved_existing=False))
    client.force_login(risk_staff)
    page = client.get(reverse("admin:core_outboxevent_changelist"))
    assert page.status_code == 200
    assert "shown-in-admin" in page.content.decode() and "order.created" in page.content.decode()
    row = OutboxEvent.objects.get()
    detail = client.get(reverse("admin:core_outboxevent_change", args=[row.pk]))
    assert detail.status_code == 200 and str(row.event_id) in detail.content.decode()
