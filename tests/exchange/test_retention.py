"""Exchange-call audit retention: the prune job deletes exactly the rows past EXCHANGE_CALL_RETENTION_DAYS,
in batches that each commit on their own; its schedule is created idempotently by setup_schedules."""

from datetime import timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from exchange import retention
from exchange.models import ExchangeCall
from tests.core.test_settings_validation import run_check
from tests.exchange.factories import ExchangeCallFactory


def _rows(now, *ages_days):
    rows = ExchangeCall.objects.bulk_create(ExchangeCallFactory.build_batch(len(ages_days)))
    for row, age in zip(rows, ages_days, strict=True):
        ExchangeCall.objects.filter(pk=row.pk).update(created_at=now - timedelta(days=age))
    return [r.pk for r in rows]


@pytest.mark.django_db
def test_deletes_exactly_the_rows_past_the_retention_in_batches(settings):
    settings.EXCHANGE_CALL_RETENTION_DAYS = 30
    now = timezone.now()
    old = _rows(now, *([45] * 7), 31, 30.001)  # 9 rows older than 30 days
    kept = _rows(now, 29.999, 10, 0)

    with CaptureQueriesContext(connection) as queries:
        deleted = retention.exchange_calls_prune(now=now, batch=4)

    assert deleted == 9
    assert set(ExchangeCall.objects.values_list("pk", flat=True)) == set(kept)
    assert not ExchangeCall.objects.filter(pk__in=old).exists()
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 4 + 4 + 1: it stops at the short batch
    assert all("LIMIT 4" in sql for sql in deletes)
    assert retention.exchange_calls_prune(now=now, batch=4) == 0  # nothing left: one empty look


@pytest.mark.postgres  # a second connection reads the table while the prune runs
@pytest.mark.django_db(transaction=True)
def test_each_batch_commits_on_its_own(settings):
    """Between two batches another connection already sees the rows gone: no transaction spans the run."""
    settings.EXCHANGE_CALL_RETENTION_DAYS = 1
    now = timezone.now()
    _rows(now, *([2] * 5))
    db = connection.settings_dict
    seen = []
    with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                         dbname=db["NAME"], autocommit=True) as other:  # fmt: skip

        def count(_deleted):
            table = ExchangeCall._meta.db_table
            seen.append(other.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

        assert retention.exchange_calls_prune(now=now, batch=2, on_batch=count) == 5
    assert seen == [3, 1, 0]


@pytest.mark.django_db
def test_the_job_follows_the_setting(settings):
    now = timezone.now()
    _rows(now, 8, 3)
    settings.EXCHANGE_CALL_RETENTION_DAYS = 5
    assert retention.job_exchange_calls_prune() == 1
    settings.EXCHANGE_CALL_RETENTION_DAYS = 2
    assert retention.job_exchange_calls_prune() == 1
    assert not ExchangeCall.objects.exists()


@pytest.mark.django_db
def test_setup_schedules_creates_the_prune_schedule_once_and_follows_the_interval(settings):
    settings.EXCHANGE_CALL_PRUNE_INTERVAL = 3600
    out = StringIO()
    call_command("setup_schedules", stdout=out)
    call_command("setup_schedules", stdout=out)

    row = Schedule.objects.get(name=retention.SCHEDULE_NAME)
    assert Schedule.objects.filter(func=retention.SCHEDULE_FUNC).count() == 1
    assert (row.minutes, row.schedule_type, row.repeats) == (60, Schedule.MINUTES, -1)
    assert f"{retention.SCHEDULE_NAME}: created" in out.getvalue()
    assert f"{retention.SCHEDULE_NAME}: unchanged" in out.getvalue()

    settings.EXCHANGE_CALL_PRUNE_INTERVAL = 90
    call_command("setup_schedules", stdout=StringIO())
    assert Schedule.objects.get(name=retention.SCHEDULE_NAME).minutes == 2


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EXCHANGE_CALL_RETENTION_DAYS", "0", "EXCHANGE_CALL_RETENTION_DAYS='0' is out of range: must be at least 1"),
        ("EXCHANGE_CALL_RETENTION_DAYS", "a month", "EXCHANGE_CALL_RETENTION_DAYS='a month' is not a whole number"),
        ("EXCHANGE_CALL_RETENTION_DAYS", "99999", "EXCHANGE_CALL_RETENTION_DAYS='99999' is out of range"),
        ("EXCHANGE_CALL_PRUNE_BATCH", "0", "EXCHANGE_CALL_PRUNE_BATCH='0' is out of range: must be at least 1"),
        ("EXCHANGE_CALL_RESPONSE_MAX_BYTES", "-1", "EXCHANGE_CALL_RESPONSE_MAX_BYTES='-1' is out of range"),
    ],
)
def test_a_bad_audit_setting_stops_the_process_with_one_clear_line(variable, value, expected):
    result = run_check(**{variable: value})

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert expected in result.stderr
