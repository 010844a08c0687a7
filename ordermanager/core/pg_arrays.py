"""Columns of values as PostgreSQL array literals, for the ``unnest`` statements of the fill path.

The fill path writes a group's executions and ledger entries with one ``INSERT … SELECT * FROM
unnest(%s::type[], …)`` each: one array per column. Handed Python lists, psycopg's array dumper looks
up a dumper and runs two regular expressions per element (about 2.5 µs each, the largest CPU cost of
a 10-fill message: docs/decisions/0423). Here the converter of a column is chosen once from its model
field and the literal is joined in one pass; psycopg then quotes one string per column.

Only the value types the fill path writes are accepted (text, Decimal, int, bool, datetime, None); any
other value raises ``TypeError`` rather than guess a text form, and a number column never takes text (a
comma in it would change the array's shape).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

_TEXT_TYPES = {"CharField", "TextField", "SlugField", "EmailField", "URLField", "UUIDField"}
_INT_TYPES = {"IntegerField", "BigIntegerField", "SmallIntegerField", "PositiveIntegerField",
              "PositiveBigIntegerField", "PositiveSmallIntegerField", "AutoField", "BigAutoField",
              "SmallAutoField", "ForeignKey", "OneToOneField"}  # fmt: skip


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"text column given {type(value).__name__}")
    # Always quoted (an unquoted empty element or NULL would read differently); inside quotes only
    # backslash and double quote are special.
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def _decimal(value: Any) -> str:
    if type(value) is Decimal or type(value) is int:
        return str(value)
    raise TypeError(f"numeric column given {type(value).__name__}")


def _int(value: Any) -> str:
    if type(value) is int:
        return str(value)
    raise TypeError(f"integer column given {type(value).__name__}")


def _bool(value: Any) -> str:
    if value is True:
        return "t"
    if value is False:
        return "f"
    raise TypeError(f"boolean column given {type(value).__name__}")


def _datetime(value: Any) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TypeError("timestamp column needs an aware datetime")
    return f'"{value.isoformat()}"'


def _encoder_of(field) -> Callable[[Any], str]:
    kind = field.get_internal_type()
    if kind in _TEXT_TYPES:
        return _text
    if kind == "DecimalField":
        return _decimal
    if kind in _INT_TYPES:
        return _int
    if kind == "BooleanField":
        return _bool
    if kind == "DateTimeField":
        return _datetime
    raise TypeError(f"no array literal for {field.name} ({kind})")


def pg_array_literal(field, values: Sequence[Any]) -> str:
    """The PostgreSQL array literal (``{…}``) of ``values`` for a column of model ``field``; None is NULL."""
    encode = _encoder_of(field)
    return "{" + ",".join("NULL" if v is None else encode(v) for v in values) + "}"


def pg_array_literals(fields: Sequence, rows: Sequence[Any], value: Callable[[Any, str], Any] = getattr) -> list[str]:
    """One array literal per field over ``rows``; ``value(row, attname)`` reads a row's value (default:
    the attribute)."""
    return [pg_array_literal(f, [value(row, f.attname) for row in rows]) for f in fields]
