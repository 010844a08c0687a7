"""The dashboard forward's bounded queue: a full queue drops forwards (the events are in the outbox) and says so
in one log line per interval with the count, not one line per event carrying the whole event."""

import threading
import time

import structlog

from ordermanager import events


def _stuck_publisher(monkeypatch, size: int):
    """A publisher whose thread holds the first forward until ``release`` is set, with room for ``size`` more."""
    monkeypatch.setattr(events, "_QUEUE_SIZE", size)
    monkeypatch.setattr(events, "_dashboard_reachable", lambda: True)  # whatever layer this test run has
    release, started = threading.Event(), threading.Event()
    publisher = events.EventPublisher()

    def deliver(batch):
        started.set()
        release.wait(10)

    monkeypatch.setattr(publisher, "_deliver", deliver)
    publisher.submit(events.ORDER_UPDATED, {"n": 0})
    assert started.wait(10)  # the thread holds the first one: the queue is empty and then fills up
    return publisher, release


def _dropped_lines(entries) -> list[dict]:
    return [e for e in entries if e["event"] == "dashboard_forward_dropped"]


def test_a_full_queue_drops_forwards_with_one_line_per_interval_that_counts_them(monkeypatch):
    publisher, release = _stuck_publisher(monkeypatch, size=2)
    clock = [1000.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: clock[0])
    with structlog.testing.capture_logs() as entries:
        for n in range(1, 10):  # two fit; seven are dropped
            publisher.submit(events.ORDER_UPDATED, {"n": n, "order_link_id": "x" * 50})
        lines = _dropped_lines(entries)
        assert [(e["dropped"], e["total"], e["log_level"]) for e in lines] == [(1, 1, "warning")]
        assert "message" not in lines[0] and "x" * 50 not in str(lines[0])  # the count, not the events

        clock[0] += events.DROPPED_LOG_EVERY  # the interval passed: the next drop reports the six held back too
        publisher.submit(events.POSITION_UPDATED, {"n": 10})
        lines = _dropped_lines(entries)
        assert [(e["dropped"], e["total"]) for e in lines] == [(1, 1), (7, 8)]
        assert lines[-1]["last_routing_key"] == events.POSITION_UPDATED
    assert publisher.dropped == 8
    release.set()
    assert publisher.flush(10)


def test_drops_held_back_are_logged_by_the_thread_once_the_interval_has_passed(monkeypatch):
    publisher, release = _stuck_publisher(monkeypatch, size=1)
    clock = [1000.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: clock[0])
    with structlog.testing.capture_logs() as entries:
        for n in range(1, 5):  # one fits; three are dropped, one line for the first
            publisher.submit(events.ORDER_UPDATED, {"n": n})
        clock[0] += events.DROPPED_LOG_EVERY
        release.set()  # the thread forwards what it holds and then reports the two not logged yet
        deadline = time.time() + 10
        while len(_dropped_lines(entries)) < 2 and time.time() < deadline:
            publisher.flush(1)
        assert [(e["dropped"], e["total"]) for e in _dropped_lines(entries)] == [(1, 1), (2, 3)]
