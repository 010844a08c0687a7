"""The rules of a worker's startup and exit (decision 0006), in process.

A process on its way out does not drop what its database backlog holds.

Outside a requested stop, ``backlogs_settle`` (called by every long-lived worker's exit path through
``StartupSequence.finish``) waits until the rows are written; after a stop request it waits a bounded
grace and logs what is lost. The backlog's write is the only edge replaced: it fails like an unreachable
database (Django's OperationalError) until the test lets it through.
"""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError
from structlog.testing import capture_logs

from ordermanager.core.services import db_backlog


class FlakyStore:
    """A write that fails as if the database were down until ``up`` is set; counts its attempts."""

    def __init__(self):
        self.up = threading.Event()
        self.rows: list[str] = []
        self.attempts = 0
        self.attempted = threading.Condition()

    def write(self, item: str) -> None:
        with self.attempted:
            self.attempts += 1
            self.attempted.notify_all()
        if not self.up.is_set():
            raise OperationalError("connection refused")
        self.rows.append(item)

    def wait_attempts(self, n: int, timeout: float = 10) -> None:
        with self.attempted:
            assert self.attempted.wait_for(lambda: self.attempts >= n, timeout), f"{self.attempts} attempts"


@pytest.fixture
def store():
    store = FlakyStore()
    backlog = db_backlog.WriteBacklog("test-exit", write=store.write, symbols_of=lambda item: [("linear", item)],
                                      describe=lambda item: {"item": item}, mark=lambda keys, reason: None)  # fmt: skip
    store.backlog = backlog
    yield store
    store.up.set()  # let the drainer finish, then forget this backlog
    backlog.wait_empty(10)
    db_backlog._ALL.remove(backlog)


def test_an_exit_without_a_stop_request_waits_until_the_backlog_is_written(store):
    assert store.backlog.submit("BTCUSDT") == "kept"
    stop, settled = threading.Event(), []
    exiting = threading.Thread(target=lambda: settled.append(db_backlog.backlogs_settle(stop=stop, grace=0.1)))
    exiting.start()
    store.wait_attempts(3)  # the drainer retried twice more while the exit was held
    assert exiting.is_alive() and not settled, "the process would have exited with a row in memory"

    store.up.set()
    exiting.join(timeout=15)
    assert settled == [True]
    assert store.rows == ["BTCUSDT"]


def test_a_requested_stop_gives_the_backlog_a_bounded_grace_then_logs_what_is_lost(store):
    store.backlog.submit("ETHUSDT")
    store.backlog.submit("SOLUSDT")
    stop = threading.Event()
    stop.set()
    with capture_logs() as logs:
        assert db_backlog.backlogs_settle(stop=stop, grace=0.3) is False
    lost = [e for e in logs if e["event"] == "db_backlog_lost_at_stop"]
    assert lost == [{"event": "db_backlog_lost_at_stop", "log_level": "error", "backlog": "test-exit", "items": 2,
                     "symbols": [], "grace_s": 0.3}]  # fmt: skip


def test_a_requested_stop_while_held_ends_the_wait(store):
    store.backlog.submit("XRPUSDT")
    stop, settled = threading.Event(), []
    exiting = threading.Thread(target=lambda: settled.append(db_backlog.backlogs_settle(stop=stop, grace=0.1)))
    exiting.start()
    store.wait_attempts(2)
    assert exiting.is_alive()
    stop.set()  # SIGTERM while held
    exiting.join(timeout=15)
    assert not exiting.is_alive() and settled == [False]


# --- the startup sequence's mechanics (the process-level proof is tests/core/test_startup_sequence.py) ----------


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_attempt_stops_what_it_started_newest_first_then_starts_over():
    from amqp.exceptions import ConnectionForced

    from ordermanager.core.services.startup_sequence import StartupSequence

    stop = threading.Event()
    sequence = StartupSequence("test", stop=stop, errors=(ConnectionForced,))
    stopped: list[str] = []
    failures = [OperationalError("server closed the connection"), ConnectionForced("broker went away")]

    def start() -> str:
        sequence.step("a")
        sequence.started("heartbeat", lambda: stopped.append("heartbeat"))
        sequence.started("relay", lambda: stopped.append("relay"))
        if failures:
            raise failures.pop(0)
        return "running"

    with capture_logs() as logs:
        assert sequence.run(start) == "running"
    assert sequence.attempts == 3
    assert stopped == ["relay", "heartbeat", "relay", "heartbeat"]
    assert [e["event"] for e in logs if e["event"].startswith("startup_")] == [
        "startup_interrupted", "startup_restarting", "startup_interrupted", "startup_restarting"]  # fmt: skip
    sequence.finish()
    assert stopped[-2:] == ["relay", "heartbeat"]


@pytest.mark.django_db(transaction=True)
def test_a_stop_request_ends_the_startup_at_the_next_step_and_other_errors_are_not_swallowed():
    from ordermanager.core.services.startup_sequence import StartupSequence
    from ordermanager.core.services.startup_wait import StartupAborted

    stop = threading.Event()
    sequence = StartupSequence("test", stop=stop)

    def bug() -> None:
        sequence.step("a")
        raise ValueError("a bug is not an outage")

    with pytest.raises(ValueError):
        sequence.run(bug)
    assert sequence.attempts == 1

    def stopped_midway() -> None:
        sequence.step("a")
        stop.set()
        sequence.step("b")

    with pytest.raises(StartupAborted, match="before b"):
        sequence.run(stopped_midway)
