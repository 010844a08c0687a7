"""Columns of values as PostgreSQL array literals, for the ``unnest`` statements of the fill path.

The fill path writes a group's executions and ledger entries with one ``INSERT … SELECT * FROM
unnest(%s::type[], …)`` each: one array per column. Handed Python lists, psycopg's array dumper looks
up a dumper and runs two regular expressions per element (about 2.5 µs each, the largest CPU cost of
a 10-fill message: docs/decisions/0423). Here the converter of a column is chosen once from its model
field and the literal is joined in one pass; psycopg then quotes one string per column.

Only the value types the fill path writes are accepted (text, Decimal, int, bool, datetime, None, and
JSON values for a JSON column without its own encoder); any
other value raises ``TypeError`` rather than guess a text form, and a number column never takes text (a
comma in it would change the array's shape).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from operator import attrgetter, itemgetter
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


def _json(value: Any) -> str:
    return _text(json.dumps(value, separators=(",", ":")))


def _encoder_of(field) -> Callable[[Any], str]:
    kind = field.get_internal_type()
    if kind == "JSONField" and field.encoder is None:
        return _json
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
    return _literal(_encoder_of(field), values)


def pg_text_array_literal(values: Sequence[str | None]) -> str:
    """The array literal of texts, whatever the column they are cast to: JSON documents already encoded for a
    ``jsonb[]`` cast, say (their one encoding; ``pg_array_literal`` of a JSON field encodes values). None is
    NULL."""
    return _literal(_text, values)


def _literal(encode: Callable[[Any], str], values: Sequence[Any]) -> str:
    fast = _FAST.get(encode)
    if fast is not None and values:
        text = fast(values)
        if text is not None:
            return text
    return "{" + ",".join("NULL" if v is None else encode(v) for v in values) + "}"


# Whole-column paths for the common case (every value of the column's own type, no NULL, no character to
# escape), checked and joined at C speed; None means "not that case": the per-value path above decides.
def _fast_text(values: Sequence[Any]) -> str | None:
    if set(map(type, values)) != {str}:
        return None
    joined = '","'.join(values)
    if "\\" in joined or joined.count('"') != 2 * (len(values) - 1):
        return None
    return '{"' + joined + '"}'


def _fast_decimal(values: Sequence[Any]) -> str | None:
    if not set(map(type, values)) <= {Decimal, int}:
        return None
    return "{" + ",".join(map(str, values)) + "}"


def _fast_int(values: Sequence[Any]) -> str | None:
    if set(map(type, values)) != {int}:
        return None
    return "{" + ",".join(map(str, values)) + "}"


def _fast_datetime(values: Sequence[Any]) -> str | None:
    if set(map(type, values)) != {datetime} or None in set(map(attrgetter("tzinfo"), values)):
        return None
    distinct = set(values)
    if len(distinct) * 4 < len(values):  # a column of one time (created_at): each distinct one written once
        texts = {v: v.isoformat() for v in distinct}
        return '{"' + '","'.join(map(texts.__getitem__, values)) + '"}'
    return '{"' + '","'.join(map(datetime.isoformat, values)) + '"}'


_FAST = {_text: _fast_text, _decimal: _fast_decimal, _int: _fast_int, _datetime: _fast_datetime}


def pg_array_literals(fields: Sequence, rows: Sequence[Any], *, by_key: bool = False) -> list[str]:
    """One array literal per field over ``rows``: objects read by attribute (the field's attname), or mappings
    read by key with ``by_key``. The rows are turned into columns in one pass (``zip``)."""
    if not rows:
        return ["{}" for _ in fields]
    names = [f.attname for f in fields]
    read = itemgetter(*names) if by_key else attrgetter(*names)
    columns = list(zip(*map(read, rows), strict=True)) if len(names) > 1 else [[read(row) for row in rows]]
    return [pg_array_literal(f, column) for f, column in zip(fields, columns, strict=True)]
