"""An ORM query compiled to SQL once per process and run with new values (docs/decisions/0328).

The ORM builds and compiles a queryset on every call: for the statements a signal or a poll runs many times
that is 0.2-0.6 ms of CPU each, more than the statement's round trip (docs/decisions/0325). ``OrmStatement``
builds its query once with marker values in the places that change per call ("slots"), keeps the SQL text
and which parameter is which slot, and then only binds the call's values. The ORM stays the one definition
of the query.

PostgreSQL only: there the ORM hands text, datetimes and decimals to the driver unchanged, so a marker is
found as itself among the parameters. On SQLite (the embedded default, not the hot path) the ORM turns
datetimes into text, so the query is built per call as before. A build whose parameters hide a marker inside
another value (a ``__contains`` pattern, say) or drop it is refused when it is first compiled, not bound
wrong.

A build must give the same statement shape for every value (no ``if symbol:`` inside): a query whose shape
changes is two statements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorDebugWrapper
from django.db.models.sql.subqueries import UpdateQuery

_FIXED = object()  # a parameter of the build itself, the same on every call


class OrmStatement:
    """``build(**values)`` as ``(sql, params)`` for ``cursor.execute``, compiled once per database alias on
    PostgreSQL. ``build`` gives a queryset (its SELECT) or ``(queryset, {field: value})`` (the UPDATE that
    ``queryset.update(**{field: value})`` would run). Every keyword of a call is a slot; slots take text,
    integers, datetimes or decimals."""

    def __init__(self, build: Callable[..., Any]):
        self._build = build
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, list]] = {}
        self._lock = threading.Lock()

    def sql(self, **values: Any) -> tuple[str, list]:
        if connection.vendor != "postgresql":
            return _sql_of(self._build(**values))
        key = (connection.alias, tuple(sorted(values)))
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key) or self._compile(values)
                self._compiled[key] = compiled
        text, places = compiled
        return text, [values[place] if isinstance(place, str) else place[1] for place in places]

    def rows(self, **values: Any) -> list[tuple]:
        """Run the SELECT on a ``fixed_cursor``: its rows."""
        sql, params = self.sql(**values)
        with fixed_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def run(self, **values: Any) -> int:
        """Run the UPDATE on a ``fixed_cursor``: how many rows it changed."""
        sql, params = self.sql(**values)
        with fixed_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    def _compile(self, values: dict[str, Any]) -> tuple[str, list]:
        markers = {name: _marker(name, index, value) for index, (name, value) in enumerate(sorted(values.items()))}
        text, params = _sql_of(self._build(**markers))
        by_marker = {_key(marker): name for name, marker in markers.items()}
        places: list = []
        found: set[str] = set()
        for param in params:
            name = by_marker.get(_key(param))
            if name is not None:
                places.append(name)
                found.add(name)
                continue
            if isinstance(param, str) and any(isinstance(m, str) and m in param for m in markers.values()):
                raise ValueError(f"{self._build.__qualname__}: a slot is inside another parameter ({param!r})")
            places.append((_FIXED, param))
        missing = sorted(set(markers) - found)
        if missing:
            raise ValueError(f"{self._build.__qualname__}: slots not bound as parameters: {', '.join(missing)}")
        return text, places


def _sql_of(built: Any) -> tuple[str, Any]:
    if not isinstance(built, tuple):
        return built.query.sql_with_params()
    queryset, values = built
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    return query.get_compiler(connection.alias).as_sql()


def _marker(name: str, index: int, value: Any) -> Any:
    """A value of ``value``'s type that no real call passes."""
    if isinstance(value, bool):
        raise TypeError(f"slot {name}: bool values cannot be told apart from constants")
    if isinstance(value, int):
        # Inside a 32-bit integer column's range: Django compiles a lookup on a value out of the column's range
        # to "no rows" instead of a parameter.
        return -1_987_654_321 - index
    if isinstance(value, str):
        return f"\x1eom-slot:{name}\x1e"
    if isinstance(value, datetime):
        return datetime(1901, 2, 3, 4, 5, 6, 1000 + index, tzinfo=UTC)
    if isinstance(value, Decimal):
        return Decimal(f"-7.0000000000000000{1000 + index}")
    raise TypeError(f"slot {name}: {type(value).__name__} values cannot be told apart from constants")


def _key(value: Any) -> tuple[type, Any] | None:
    # By type and value: a constant 0 must not be taken for a marker that compares equal to it.
    return (type(value), value) if isinstance(value, str | int | datetime | Decimal) else None


def fixed_cursor():
    """``connection.cursor()`` for a statement whose text is fixed (built once per process: ``OrmStatement``, the
    prebuilt statements of the fill path, the rules' read): on PostgreSQL with ``DATABASE_PREPARE`` (the
    default) its parameters are bound server side and the statement is prepared on the connection the first
    time, so later calls skip the client's quoting of every value into the text and the server's parse and plan
    (docs/decisions/0329). Django's wrapper stays around it: the statement is counted, logged and its errors
    mapped as any other. Elsewhere, the connection's ordinary cursor."""
    # The thread's connection object, looked up once: every attribute read through ``django.db.connection`` is a
    # lookup of the thread's connection again, and this runs for every statement of the hot paths.
    db = connections[DEFAULT_DB_ALIAS]
    if not (settings.DATABASE_PREPARE and db.vendor == "postgresql"):
        return db.cursor()
    db.close_if_health_check_failed()
    db.ensure_connection()
    raw = db.connection
    if raw.prepare_threshold is None:
        # Django opens connections with preparing off (None). Only server-binding cursors ever prepare, and this is
        # the one place that makes them; the number does not matter, as ours ask to prepare at once.
        raw.prepare_threshold = 5
    db.validate_thread_sharing()
    with db.wrap_database_errors:
        cursor = _PreparingCursor(raw)
    return _LoggedFixed(cursor, db) if db.queries_logged else db.make_cursor(cursor)


class _LoggedFixed(CursorDebugWrapper):
    """Django's query log (DEBUG, the tests' statement counts) with the statement's values in its text, as for
    any other statement: Django reads that text from the cursor's last query, which a prepared run leaves empty."""

    def execute(self, sql, params=None):
        with self.debug_sql(self.db.ops.compose_sql(sql, params) if params else sql):
            return self._execute_with_wrappers(sql, params, many=False, executor=self._execute)


class _PreparingCursor(psycopg.Cursor):
    """A server-binding cursor that prepares what it runs (psycopg keeps the prepared statements per
    connection, up to ``prepared_max``; a fixed text is prepared once)."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)
