"""The private servers the chaos test restarts: they are not the shared ones, and their state survives a restart
(committed rows after a crash-like PostgreSQL stop, persistent messages after a RabbitMQ kill)."""

from __future__ import annotations

import psycopg
import pytest
from kombu import Connection, Exchange, Queue

from tests.fixtures.private_servers import port_open

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


def test_private_postgres_keeps_committed_rows_across_an_immediate_restart(private_postgres):
    assert private_postgres.port != 5432
    url = private_postgres.create_database("kept")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t VALUES (42)")
    private_postgres.stop(mode="immediate")
    assert not private_postgres.running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    private_postgres.start()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [(42,)]


def test_private_rabbitmq_keeps_persistent_messages_across_a_kill(private_rabbitmq):
    assert private_rabbitmq.port != 5672 and port_open(private_rabbitmq.port)
    queue = Queue("kept", Exchange("kept", type="direct", durable=True), routing_key="kept", durable=True)
    with Connection(private_rabbitmq.url, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key="kept", declare=[queue], delivery_mode=2)
    private_rabbitmq.restart(kill=True)
    with Connection(private_rabbitmq.url) as conn:
        message = queue.bind(conn.default_channel).get(no_ack=True)
        assert message is not None and message.payload == {"n": 1}
