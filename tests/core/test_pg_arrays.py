"""Array literals for the fill path's unnest statements (docs/decisions/0423): what PostgreSQL reads back is
exactly what was given, whatever the text holds; a value of the wrong kind is refused, not guessed at."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection

from ordermanager.core.pg_arrays import pg_array_literal
from orders.models import Execution
from positions.models import PositionLedgerEntry

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

TEXTS = ["", "plain", 'a"quote', "back\\slash", "{braces}", "com,ma", "NULL", "null", " spaced ", "'single'",
         "semi;colon", "\\\"both\\\"", "ünïcödé ✓", "tab\tand\nnewline"]  # fmt: skip


def read_back(field, values, pg_type):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{pg_type}[]", [pg_array_literal(field, values)])
        return cursor.fetchone()[0]


def test_text_reads_back_exactly_with_nulls_in_place():
    field = Execution._meta.get_field("exec_id")
    values = TEXTS + [None]
    assert read_back(field, values, "varchar(64)") == values
    # The whole-column path (nothing to escape, no NULL) and the per-value one give the same.
    plain = [t for t in TEXTS if '"' not in t and "\\" not in t]
    assert len(plain) > 5 and read_back(field, plain, "varchar(64)") == plain
    for text in TEXTS:
        assert read_back(field, [text], "varchar(64)") == [text]
        assert read_back(field, ["x", text, ""], "varchar(64)") == ["x", text, ""]


def test_numbers_booleans_and_times_read_back_exactly():
    qty = PositionLedgerEntry._meta.get_field("qty")
    values = [Decimal("0.000000000000000001"), Decimal("-12345678901234567.5"), Decimal("0E-18"), Decimal("1E+3"),
              Decimal(0), None, 7]  # fmt: skip
    got = read_back(qty, values, "numeric")
    assert got == values and str(got[2]) == "0E-18"  # same value, same scale
    seq = PositionLedgerEntry._meta.get_field("seq")
    assert read_back(seq, [0, -1, 2**62, None], "bigint") == [0, -1, 2**62, None]
    maker = Execution._meta.get_field("is_maker")
    assert read_back(maker, [True, False, None], "boolean") == [True, False, None]
    at = Execution._meta.get_field("exec_time")
    times = [datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)]
    assert read_back(at, times, "timestamptz") == times
    assert read_back(at, [*times, None], "timestamptz") == [*times, None]
    assert read_back(qty, values[:5], "numeric") == values[:5]  # no NULL: the whole-column path


@pytest.mark.parametrize(
    ("attname", "value"),
    [("qty", "1,2"), ("qty", 1.5), ("seq", Decimal(1)), ("seq", True), ("seq", "3"), ("exec_id", 5),
     ("created_at", datetime(2026, 1, 1)), ("created_at", "2026-01-01")],  # fmt: skip
)
def test_a_value_of_the_wrong_kind_is_refused(attname, value):
    field = PositionLedgerEntry._meta.get_field(attname)
    with pytest.raises(TypeError):
        pg_array_literal(field, [value])
    with pytest.raises(TypeError):
        pg_array_literal(field, [value, value])
