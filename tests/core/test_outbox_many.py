"""Batched outbox writes (docs/decisions/0419): N events of M aggregates in a fixed number of statements,
sequences contiguous per aggregate, no deadlock between writers of the same aggregates."""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from ordermanager import events
from ordermanager.core.models import OutboxEvent, OutboxSequence
from ordermanager.outbox import EventSchemaError, outbox_write, outbox_write_many
from tests.core.test_outbox import order_event

pytestmark = pytest.mark.django_db


def created(link, status="new"):
    return events.ORDER_CREATED, events._envelope(events.ORDER_CREATED,
                                                  order_event(link=link, status=status, resolved_existing=False))


def outbox_statements() -> int:
    """Statements of one outbox write: the sequences and the rows in one on PostgreSQL, two on SQLite."""
    return 1 if connection.vendor == "postgresql" else 2


def statements(captured):
    return [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]


def test_n_events_of_m_aggregates_cost_the_same_statements_as_one():
    with transaction.atomic():
        with CaptureQueriesContext(connection) as one:
            outbox_write_many([created("a")])
        with CaptureQueriesContext(connection) as many:
            outbox_write_many([created(f"agg-{k % 7}") for k in range(40)])
    # One sequence upsert for all the aggregates and one insert of all the rows: on PostgreSQL one statement
    # (docs/decisions/0333), on SQLite two.
    assert len(statements(many)) == len(statements(one)) == outbox_statements(), statements(many)
    assert OutboxEvent.objects.count() == 41


def test_sequences_are_contiguous_per_aggregate_in_the_order_given():
    outbox_write(routing_key=events.ORDER_CREATED, message=created("a")[1])  # a: 1 already taken
    messages = outbox_write_many([created("a", "new"), created("b"), created("a", "filled"), created("b"),
                                  created("a", "cancelled")])
    assert [(m["aggregate_id"], m["sequence"]) for m in messages] == [
        ("a", 2), ("b", 1), ("a", 3), ("b", 2), ("a", 4)]
    rows = list(OutboxEvent.objects.order_by("id").values_list("aggregate_id", "sequence", "payload"))
    assert [(a, s) for a, s, _ in rows] == [("a", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2), ("a", 4)]
    assert [p["status"] for a, _, p in rows if a == "a"] == ["new", "new", "filled", "cancelled"]
    assert all(p["sequence"] == s for _, s, p in rows)
    assert dict(OutboxSequence.objects.values_list("aggregate", "last")) == {"order:a": 4, "order:b": 2}
    assert len({m["event_id"] for m in messages}) == 5


def test_aggregates_whose_names_hold_array_syntax_keep_their_own_sequences():
    """The aggregates reach PostgreSQL as one array literal joined here (0328): quotes, backslashes, commas,
    braces and spaces in a name stay inside that name."""
    names = ['a"b', "c\\d", "e,f", "{g}", "h i", "NULL"]
    outbox_write_many([created(name) for name in names] + [created('a"b')])
    assert dict(OutboxSequence.objects.values_list("aggregate", "last")) == {
        **{f"order:{name}": 1 for name in names}, 'order:a"b': 2}


def test_one_invalid_event_refuses_the_batch_and_takes_no_sequence():
    bad = (events.ORDER_CREATED, events._envelope(events.ORDER_CREATED, order_event(link="a")))  # no resolved_existing
    with pytest.raises(EventSchemaError, match="resolved_existing"):
        outbox_write_many([created("a"), bad])
    assert not OutboxEvent.objects.exists() and not OutboxSequence.objects.exists()


def test_grouped_events_are_written_together_at_the_end_and_forwarded_after_commit(
        monkeypatch, django_capture_on_commit_callbacks):
    forwarded = []
    monkeypatch.setattr(events.EventPublisher, "submit", lambda self, key, msg: forwarded.append((key, msg)))
    with (django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as captured,
          transaction.atomic()):
        with events.events_grouped():
            for k in range(12):
                events.publish_event_on_commit(routing_key=events.ORDER_CREATED,
                                               payload=order_event(link=f"g{k % 3}", resolved_existing=False))
            assert not OutboxEvent.objects.exists()  # gathered, not yet written
        assert OutboxEvent.objects.count() == 12  # written when the block ends, in the caller's transaction
        assert forwarded == []  # forwarded only after commit
    outbox = [q for q in statements(captured) if q.startswith(("INSERT", "WITH"))]  # the test's own reads aside
    assert len(outbox) == outbox_statements(), outbox
    assert [m["sequence"] for _, m in forwarded] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]

    with pytest.raises(RuntimeError), transaction.atomic(), events.events_grouped():
        events.publish_event_on_commit(routing_key=events.ORDER_CREATED,
                                       payload=order_event(link="x", resolved_existing=False))
        raise RuntimeError("the change fails")
    assert OutboxEvent.objects.count() == 12 and len(forwarded) == 12


def _blocked_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


@pytest.mark.postgres  # row locks across connections
@pytest.mark.django_db(transaction=True)
def test_two_writers_of_the_same_aggregates_in_opposite_orders_do_not_deadlock():
    held, go_on = threading.Event(), threading.Event()
    pid: list[int] = []
    errors: list[BaseException] = []

    def first():  # takes x, then (still in its transaction) y once the second writer waits
        try:
            with transaction.atomic():
                outbox_write_many([created("x")])
                held.set()
                assert go_on.wait(20)
                outbox_write_many([created("y")])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def second():  # asks for y then x: taken in aggregate order, so it waits on x holding nothing (taken in
        # the order given, it would hold y while waiting for x, and the first writer's y would deadlock)
        try:
            assert held.wait(20)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid.append(cursor.fetchone()[0])
            with transaction.atomic():
                outbox_write_many([created("y"), created("x")])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while not (pid and _blocked_on_a_lock(pid[0])):
        assert time.monotonic() < deadline, "the second writer never waited on the first"
        time.sleep(0.01)
    go_on.set()
    for t in threads:
        t.join(30)
    assert errors == []  # a deadlock would be an OperationalError in one of them
    rows = list(OutboxEvent.objects.order_by("id").values_list("aggregate_id", "sequence"))
    assert [s for a, s in rows if a == "x"] == [1, 2] and [s for a, s in rows if a == "y"] == [1, 2]


@pytest.mark.postgres  # row locks across connections
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_each_aggregates_sequences_contiguous_in_commit_order():
    aggregates = [f"c{k}" for k in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def writer(seed: int):
        rng = random.Random(seed)
        try:
            start.wait(20)
            for _ in range(25):
                batch = [created(rng.choice(aggregates)) for _ in range(rng.randint(1, 8))]
                with transaction.atomic():
                    outbox_write_many(batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for aggregate in aggregates:
        sequences = list(OutboxEvent.objects.filter(aggregate_id=aggregate).order_by("id")
                         .values_list("sequence", flat=True))
        assert sequences == list(range(1, len(sequences) + 1)), (aggregate, sequences)  # ids follow sequences
