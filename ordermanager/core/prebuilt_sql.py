"""Statements built once per process for the hot paths (fill ingest, docs/decisions/0424).

Django compiles a queryset or a ``save()`` into SQL on every call; on the fill path that compiling cost
more CPU than the statements themselves. These helpers keep the ORM's meaning at a fixed price:

- ``rows_select``: rows of a model read by a statement written once (``select_sql``), turned into model
  instances with the converters the ORM would apply (resolved once per model), so a value reads back the
  same on PostgreSQL and SQLite (decimals, datetimes, booleans).
- ``instance_update``: ``instance.save(update_fields=...)`` as one prebuilt UPDATE; fields are prepared as
  the ORM prepares them (``pre_save`` sets ``auto_now`` times, ``get_db_prep_save`` adapts).
- ``instances_insert``: ``bulk_create`` of new instances as one prebuilt multi-row INSERT (a text per model
  and row count), the primary keys set from its ``RETURNING``; fields prepared as for ``instance_update``.
- ``in_list`` / ``list_param``: "column is one of these values" with the same statement text for any number
  of values (an array on PostgreSQL, ``json_each`` on SQLite).

No signal is sent (the project uses none on these models; ``signals_app`` holds no ``signals.py``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import Model

from ordermanager.core.sql_once import fixed_cursor


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


def lock_clause() -> str:
    """`` FOR UPDATE`` where the database locks rows (SQLite does not: it serializes writers)."""
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def select_sql(
    model: type[Model], where: str, *, order_by: str = "", limit: int | None = None, lock: bool = False
) -> str:
    """``SELECT`` every concrete column of ``model`` (in field order, as ``rows_select`` reads them)."""
    columns = ", ".join(qn(f.column) for f in model._meta.concrete_fields)
    sql = f"SELECT {columns} FROM {qn(model._meta.db_table)} WHERE {where}"
    if order_by:
        sql += f" ORDER BY {order_by}"
    return sql + (lock_clause() if lock else "")


def rows_select(model: type[Model], sql: str, params: Sequence) -> list:
    """Model instances of the rows ``sql`` (from ``select_sql``) returns."""
    with fixed_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return instances_of(model, rows)


def instances_of(model: type[Model], rows: Iterable[Sequence]) -> list:
    """Rows of every concrete column (field order) → instances, as ``Model.from_db`` makes them for a queryset."""
    attnames, converters = _reader(model, connection.vendor)
    alias = connection.alias
    out = []
    for row in rows:
        if converters:
            row = list(row)
            for i, funcs, col in converters:
                value = row[i]
                for func in funcs:
                    value = func(value, col, connection)
                row[i] = value
        out.append(model.from_db(alias, attnames, row))
    return out


def column_converter(model: type[Model], field_name: str):
    """A function turning a raw value of ``field_name`` (or of an aggregate of it, like ``SUM``) into what the
    ORM would give; the identity where the driver already gives it."""
    field = model._meta.get_field(field_name)
    col = field.get_col(model._meta.db_table)
    funcs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
    if not funcs:
        return lambda value: value

    def convert(value):
        for func in funcs:
            value = func(value, col, connection)
        return value

    return convert


@functools.cache
def _reader(model: type[Model], vendor: str) -> tuple[list[str], list]:
    # What SQLCompiler.get_converters resolves per query, resolved once per model (``vendor`` keys the cache:
    # the converters are the backend's).
    fields = model._meta.concrete_fields
    converters = []
    for i, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        funcs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if funcs:
            converters.append((i, funcs, col))
    return [f.attname for f in fields], converters


def instance_update(instance: Model, fields: tuple[str, ...]) -> int:
    """``instance.save(update_fields=fields)`` without compiling it: one UPDATE by primary key. Returns the
    number of rows changed."""
    sql, targets = _update_sql(type(instance), fields, connection.vendor)
    params = [f.get_db_prep_save(f.pre_save(instance, False), connection) for f in targets]
    params.append(instance.pk)
    with fixed_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@functools.cache
def _update_sql(model: type[Model], fields: tuple[str, ...], vendor: str) -> tuple[str, list]:
    targets = [model._meta.get_field(name) for name in fields]
    sets = ", ".join(f"{qn(f.column)} = %s" for f in targets)
    return f"UPDATE {qn(model._meta.db_table)} SET {sets} WHERE {qn(model._meta.pk.column)} = %s", targets


def instances_insert(objs: Sequence[Model]) -> None:
    """Insert new instances of one model in one statement, in order, and set their primary keys: what
    ``bulk_create`` does (no signals, no ``save()``), without compiling the INSERT on every call.

    The auto primary key and generated columns are left to the database; every other column is written as the
    ORM would write it (``pre_save(add=True)`` fills ``auto_now_add`` times and defaults were set by
    ``__init__``)."""
    if not objs:
        return
    model = type(objs[0])
    sql, fields, returning = _insert_sql(model, len(objs), connection.vendor)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs for f in fields]
    with fixed_cursor() as cursor:
        cursor.execute(sql, params)
        pks = [row[0] for row in cursor.fetchall()] if returning else [cursor.lastrowid]
    alias = connection.alias
    for obj, pk in zip(objs, pks, strict=True):
        obj.pk = pk
        obj._state.adding, obj._state.db = False, alias


@functools.cache
def _insert_sql(model: type[Model], count: int, vendor: str) -> tuple[str, tuple, bool]:
    """The INSERT of ``count`` rows of ``model`` (every concrete column but the auto primary key and the ones the
    database computes), its fields, and whether it returns the new keys (one row without ``RETURNING`` reads
    ``lastrowid``)."""
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key and not f.generated)
    returning = connection.features.can_return_rows_from_bulk_insert
    if count > 1 and not returning:
        raise NotImplementedError(f"{vendor} cannot return the keys of a multi-row INSERT")
    row = f"({', '.join(['%s'] * len(fields))})"
    sql = (f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
           f"VALUES {', '.join([row] * count)}")
    if returning:
        sql += f" RETURNING {qn(model._meta.pk.column)}"
    return sql, fields, returning


def in_list(column: str, db_type: str = "text") -> str:
    """``column`` is one of the values of one parameter (``list_param``): the same text for any count."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::{db_type}[])"
    return f"{column} IN (SELECT value FROM json_each(%s))"


def list_param(values: Sequence):
    """The parameter ``in_list`` takes: the list itself on PostgreSQL, its JSON text elsewhere."""
    if connection.vendor == "postgresql":
        return list(values)
    return json.dumps(list(values))
