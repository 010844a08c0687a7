"""The position ledger: fills applied to positions, in exec order, under the row lock.

``positions`` knows nothing of orders: it is handed executions as values. Each
one becomes a ledger entry carrying the position state after it (see
``PositionLedgerEntry``); the position row is the state after the last entry in
(exec time, seq, exec id) order. A fill that sorts before the last entry (the
stream reorders) is inserted where it belongs and only the entries after it are
replayed, so the result never depends on arrival order.

Writers hold the position row lock (``select_for_update``) for the whole
change: two fills for one position never interleave, on any number of processes.
Mark prices, snapshots and loss warnings are ``positions.services.marks``; the
ledger calls it (never the reverse) to re-evaluate the loss warning after a change.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import structlog
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Collate
from django.utils import timezone

from ordermanager.core.epoch import epoch_ms, from_epoch_ms
from ordermanager.core.pg_arrays import pg_array_literals
from ordermanager.core.prebuilt_sql import instance_update, qn, rows_select, select_sql
from ordermanager.core.sql_once import fixed_cursor
from ordermanager.events import POSITION_UPDATED, publish_event_on_commit
from positions.models import Position, PositionLedgerEntry, PositionMode, PositionPnlDay
from positions.services.marks import position_loss_warning_evaluate, position_marks_observed, position_payload
from positions.services.position_math import (
    ZERO,
    Flag,
    PositionState,
    apply_executions,
    direction_for,
    q18,
    unrealized_pnl,
)

log = structlog.get_logger(__name__)

_STATE_FIELDS = ["size", "avg_entry_price", "realized_pnl", "fees_paid", "funding_paid", "unrealized_pnl"]
_KEY_FIELDS = ["last_exec_time", "last_exec_ms", "last_exec_seq", "last_exec_id"]
_STORE_FIELDS = (*_STATE_FIELDS, *_KEY_FIELDS, "updated_at")
_AFTER_FIELDS = ["size_after", "avg_entry_after", "realized_after", "fees_after", "funding_after"]

ExecKey = tuple[int, int, str]
PositionKey = tuple[str, str, int]  # (category, symbol, position_idx)


class FillValues(NamedTuple):  # a tuple: one per fill on the fill path (docs/decisions/0332)
    """One execution as a position sees it: values only (``positions`` knows nothing of orders)."""

    exec_id: str
    exec_type: str
    exec_time_ms: int
    seq: int
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal

    @property
    def key(self) -> ExecKey:
        return (self.exec_time_ms, self.seq, self.exec_id)


# FillValues.key as a C-level getter: a message of many fills sorts by it (the property builds the same tuple).
_FILL_ORDER = operator.attrgetter("exec_time_ms", "seq", "exec_id")


@dataclass
class FillsApplied:
    positions: dict[PositionKey, Position]
    created: set[PositionKey] = field(default_factory=set)  # rows that did not exist before


def positions_apply_fills(*, fills: Mapping[PositionKey, Sequence[FillValues]]) -> FillsApplied:
    """Apply executions to their positions in the caller's transaction (or one of its own).

    Built for a stream message of many fills: every affected position row is locked in
    one statement (in key order, so concurrent writers take the locks in the same order),
    all ledger entries are written in one insert, each position row is updated once, and
    one ``position.updated`` event per position carries the state after its last fill.
    Fills that sort before a position's last entry (the stream reorders) are slotted in
    and the entries from the earliest of them on are replayed. Each exec id is applied
    at most once: a repeat violates the ledger's unique key (callers dedupe first).
    """
    keys = sorted(k for k, batch in fills.items() if batch)
    with transaction.atomic(savepoint=False):
        positions, created = _lock_positions(keys)
        entries: list[_NewEntry] = []
        replays: list[tuple[Position, ExecKey]] = []
        for key in keys:
            position = positions[key]
            batch = sorted(fills[key], key=_FILL_ORDER)
            new = [_entry(position, f) for f in batch]
            entries += new
            if batch[0].key > _last_key(position):
                state = _fold_entries(new, _state_of(position), direction_for(position.position_idx))
                _store_state(position, state, batch[-1].key)
            else:
                # Arrived out of order: slot them in (placeholder states), then replay from the earliest.
                for entry in new:
                    _set_after(entry, PositionState())
                replays.append((position, batch[0].key))
        _ledger_insert(entries)
        _pnl_days_forget([positions[k] for k in keys], [min(f.exec_time_ms for f in fills[k]) for k in keys])
        flags = {e.exec_id: e.flag for e in entries}
        for position, start in replays:
            flags.update({e.exec_id: e.flag for e in _replay_from(position, start)})
        for key in keys:
            position, batch = positions[key], fills[key]
            for fill in batch:
                _log_flag(flags.get(fill.exec_id, ""), fill.exec_id, fill.exec_type, position)
            last = max(batch, key=_FILL_ORDER)
            _after_change(position, exec_id=last.exec_id, exec_type=last.exec_type, executions=len(batch))
    return FillsApplied(positions={k: positions[k] for k in keys}, created=created)


def position_apply_fill(
    *,
    category: str,
    symbol: str,
    position_idx: int,
    side: str,
    qty: Decimal,
    price: Decimal,
    fee: Decimal,
    exec_type: str,
    exec_time: datetime | int,
    exec_id: str | None = None,
    seq: int | None = None,
) -> Position:
    """Apply one execution to its position (created on first use) and return the position.

    Joins the caller's transaction (or opens one) and locks the position row; see
    ``positions_apply_fills``. ``exec_id`` makes the ledger entry unique: applying the
    same id twice raises ``IntegrityError``; callers dedupe on their own unique key first.
    """
    exec_ms = epoch_ms(exec_time) if isinstance(exec_time, datetime) else int(exec_time)
    fill = FillValues(
        exec_id=exec_id or f"manual-{exec_ms}-{side}-{qty}-{price}",
        exec_type=exec_type,
        exec_time_ms=exec_ms,
        seq=seq or 0,
        side=side,
        qty=qty,
        price=price,
        fee=fee,
    )
    key = (category, symbol, position_idx)
    return positions_apply_fills(fills={key: [fill]}).positions[key]


def position_rebuild(*, category: str, symbol: str, position_idx: int, executions: list[dict]) -> Position:
    """Replace a position's ledger and state by the fold of ``executions`` (repair).

    Each dict has exec_id, exec_type, exec_time_ms, seq, side, qty, price, fee.
    """
    rows = sorted(executions, key=lambda e: (e["exec_time_ms"], e["seq"] or 0, e["exec_id"]))
    with transaction.atomic(savepoint=False):
        position = _locked_position(category=category, symbol=symbol, position_idx=position_idx)
        position.ledger.all().delete()
        _pnl_days_forget([position], [0])
        entries = [
            PositionLedgerEntry(
                position=position,
                position_idx=position_idx,
                exec_id=e["exec_id"],
                exec_type=e["exec_type"],
                exec_time_ms=e["exec_time_ms"],
                seq=e["seq"] or 0,
                side=e["side"],
                qty=q18(e["qty"]),
                price=q18(e["price"]),
                fee=q18(e["fee"]),
            )
            for e in rows
        ]
        state = _fold_entries(entries, PositionState(), direction_for(position_idx))
        PositionLedgerEntry.objects.bulk_create(entries, batch_size=2000)
        last = (entries[-1].exec_time_ms, entries[-1].seq, entries[-1].exec_id) if entries else (0, 0, "")
        _store_state(position, state, last)
        _after_change(position, exec_id="", exec_type="rebuild", executions=len(entries))
    return position


def positions_observe(observations: Sequence[tuple[PositionKey, Decimal | None, int]]) -> set[PositionKey]:
    """Record what the exchange's ``position`` topic says, for each ``(row key, mark price, its time in ms)`` in
    their order: the row exists (and so the symbol's mode) and its mark price. Size and entry come from fills
    only. Every row is locked (created when missing) in one statement, in key order, and written once
    (``position_marks_observed``). Returns the keys of the rows created.

    Here rather than in ``marks`` because it creates and locks rows the way fills do."""
    marks: dict[PositionKey, list[tuple[Decimal | None, int]]] = {}
    for key, mark_price, updated_ms in observations:
        marks.setdefault(key, []).append((mark_price, updated_ms))
    with transaction.atomic(savepoint=False):
        positions, created = _lock_positions(sorted(marks))
        for key, pushes in marks.items():
            position_marks_observed(positions[key], pushes)
    return created


# --- internals ---------------------------------------------------------------------


def _mode_of(position_idx: int) -> str:
    return PositionMode.ONE_WAY if position_idx == 0 else PositionMode.HEDGE


def _locked_position(*, category: str, symbol: str, position_idx: int) -> Position:
    position, _ = Position.objects.select_for_update().get_or_create(
        category=category, symbol=symbol, position_idx=position_idx, defaults={"mode": _mode_of(position_idx)}
    )
    return position


def _lock_positions(keys: list[PositionKey]) -> tuple[dict[PositionKey, Position], set[PositionKey]]:
    """Lock (creating the missing ones) the position rows of ``keys``, in key order, in one prebuilt
    statement (docs/decisions/0424)."""
    if not keys:
        return {}, set()
    found = _positions_locked(keys)
    missing = [k for k in keys if k not in found]
    if missing:
        # First fill of a position: create the rows (a concurrent creator wins the unique key,
        # we wait for it and then lock its row), then lock them like the others.
        rows = [Position(category=c, symbol=s, position_idx=i, mode=_mode_of(i)) for c, s, i in missing]
        Position.objects.bulk_create(rows, ignore_conflicts=True)
        found.update(_positions_locked(missing))
    return found, set(missing)


def _positions_locked(keys: list[PositionKey]) -> dict[PositionKey, Position]:
    one, many = _positions_locked_sql(connection.vendor)
    if len(keys) == 1:
        sql, params = one, list(keys[0])
    elif connection.vendor == "postgresql":
        sql, params = many, [list(column) for column in zip(*keys, strict=True)]
    else:
        sql, params = many, [json.dumps(keys)]
    return {(p.category, p.symbol, p.position_idx): p for p in rows_select(Position, sql, params)}


@functools.cache
def _positions_locked_sql(vendor: str) -> tuple[str, str]:
    meta = Position._meta
    category, symbol, idx = (qn(meta.get_field(n).column) for n in ("category", "symbol", "position_idx"))
    order = f"{category}, {symbol}, {idx}"
    one = select_sql(Position, f"{category} = %s AND {symbol} = %s AND {idx} = %s", lock=True)
    if vendor == "postgresql":
        wanted = "SELECT * FROM unnest(%s::text[], %s::text[], %s::int[])"
    else:
        wanted = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(3))
        wanted = f"SELECT {wanted} FROM json_each(%s)"
    many = select_sql(Position, f"({order}) IN ({wanted})", order_by=order, lock=True)
    return one, many


DAY_MS = 86_400_000
PNL_DAY_CLOSED_MS = 3_600_000  # a day is summed into PositionPnlDay once it ended this long ago


def _pnl_days_forget(positions: Sequence[Position], since: Sequence[int]) -> None:
    """The report's summed days of each position from the day of its ``since`` (epoch ms) on are no longer the
    ledger's: delete them in the ledger writer's transaction (they are summed again later). The locked row
    tells whether there are any (``pnl_days_until_ms``), so a fill after them costs no statement."""
    wanted = Q()
    for position, from_ms in zip(positions, since, strict=True):
        day = from_ms - from_ms % DAY_MS
        if day < position.pnl_days_until_ms:
            wanted |= Q(position_id=position.pk, day_ms__gte=day)
    if wanted:
        PositionPnlDay.objects.filter(wanted).delete()


def _ledger_insert(entries: list[_NewEntry]) -> None:
    """Insert new ledger entries (ids are not read back: nothing refers to them by id)."""
    now = timezone.now()
    for entry in entries:
        entry.created_at = now
    fields = _ledger_fields()
    if connection.vendor != "postgresql":
        # Multi-row VALUES, the text joined here (as executions._insert_new does), not compiled by the ORM.
        head, row_sql = _ledger_insert_sql_values()
        with connection.cursor() as cursor:
            for start in range(0, len(entries), _INSERT_CHUNK):
                chunk = entries[start : start + _INSERT_CHUNK]
                params = [f.get_db_prep_save(getattr(e, f.attname), connection) for e in chunk for f in fields]
                cursor.execute(head + ", ".join([row_sql] * len(chunk)), params)
        return
    with fixed_cursor() as cursor:
        # One array per column, unnested server side: one statement text for any number of entries.
        cursor.execute(_ledger_insert_sql(), pg_array_literals(fields, entries))


# Rows per multi-row INSERT on SQLite (32766 parameters at most; an entry has 17).
_INSERT_CHUNK = 1000


@functools.cache
def _ledger_insert_sql_values() -> tuple[str, str]:
    fields = _ledger_fields()
    columns = ", ".join(qn(f.column) for f in fields)
    return (
        f"INSERT INTO {qn(PositionLedgerEntry._meta.db_table)} ({columns}) VALUES ",
        f"({', '.join(['%s'] * len(fields))})",
    )


def _ledger_fields() -> list:
    return [f for f in PositionLedgerEntry._meta.concrete_fields if not f.primary_key]


@functools.cache
def _ledger_insert_sql() -> str:
    fields = _ledger_fields()
    columns = ", ".join(qn(f.column) for f in fields)
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    return f"INSERT INTO {qn(PositionLedgerEntry._meta.db_table)} ({columns}) SELECT * FROM unnest({arrays})"


@dataclass(slots=True)
class _NewEntry:
    """A ledger entry about to be inserted (a plain object: a model instance costs more to build
    than everything else a fill needs)."""

    position_id: int
    position_idx: int
    exec_id: str
    exec_type: str
    exec_time_ms: int
    seq: int
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    flag: str = ""
    size_after: Decimal = ZERO
    avg_entry_after: Decimal = ZERO
    realized_after: Decimal = ZERO
    fees_after: Decimal = ZERO
    funding_after: Decimal = ZERO
    created_at: datetime | None = None


def _entry(position: Position, fill: FillValues) -> _NewEntry:
    return _NewEntry(
        position_id=position.pk,
        position_idx=position.position_idx,
        exec_id=fill.exec_id,
        exec_type=fill.exec_type,
        exec_time_ms=fill.exec_time_ms,
        seq=fill.seq,
        side=fill.side,
        qty=q18(fill.qty),
        price=q18(fill.price),
        fee=q18(fill.fee),
    )


def _last_key(position: Position) -> ExecKey:
    return (position.last_exec_ms, position.last_exec_seq, position.last_exec_id)


def _state_of(position: Position) -> PositionState:
    return PositionState(
        size=position.signed_size,
        avg_entry_price=position.avg_entry_price,
        realized_pnl=position.realized_pnl,
        fees_paid=position.fees_paid,
        funding_paid=position.funding_paid,
    )


def _set_after(entry: PositionLedgerEntry | _NewEntry, state: PositionState) -> None:
    entry.size_after = state.size
    entry.avg_entry_after = state.avg_entry_price
    entry.realized_after = state.realized_pnl
    entry.fees_after = state.fees_paid
    entry.funding_after = state.funding_paid


def _state_after(entry: PositionLedgerEntry) -> PositionState:
    return PositionState(
        size=entry.size_after,
        avg_entry_price=entry.avg_entry_after,
        realized_pnl=entry.realized_after,
        fees_paid=entry.fees_after,
        funding_paid=entry.funding_after,
    )


def _store_state(position: Position, state: PositionState, key: ExecKey) -> None:
    position.size = abs(state.size) if position.position_idx else state.size
    position.avg_entry_price = state.avg_entry_price
    position.realized_pnl = state.realized_pnl
    position.fees_paid = state.fees_paid
    position.funding_paid = state.funding_paid
    position.unrealized_pnl = unrealized_pnl(
        size=state.size, avg_entry_price=state.avg_entry_price, mark_price=position.mark_price
    )
    position.last_exec_ms, position.last_exec_seq, position.last_exec_id = key
    position.last_exec_time = from_epoch_ms(key[0]) if key[0] else None
    instance_update(position, _STORE_FIELDS)  # a prebuilt UPDATE, not a compiled save() (0424)


def exec_id_ordering():
    """exec_id in byte order (Python's str order) on every database."""
    return Collate("exec_id", "C") if connection.vendor == "postgresql" else F("exec_id")


def _key_q(key: ExecKey, *, before: bool) -> Q:
    t, s, e = key
    op = "lt" if before else "gte"
    strict = "lt" if before else "gt"
    return (
        Q(**{f"exec_time_ms__{strict}": t})
        | Q(exec_time_ms=t, **{f"seq__{strict}": s})
        | Q(exec_time_ms=t, seq=s, **{f"eid__{op}": e})
    )


def _replay_from(position: Position, key: ExecKey) -> list[PositionLedgerEntry]:
    ledger = PositionLedgerEntry.objects.filter(position=position).annotate(eid=exec_id_ordering())
    before = ledger.filter(_key_q(key, before=True)).order_by("-exec_time_ms", "-seq", "-eid").first()
    start = _state_after(before) if before else PositionState()
    entries = list(ledger.filter(_key_q(key, before=False)).order_by("exec_time_ms", "seq", "eid"))
    state = _fold_entries(entries, start, direction_for(position.position_idx))
    PositionLedgerEntry.objects.bulk_update(entries, _AFTER_FIELDS + ["flag"], batch_size=1000)
    last = entries[-1]
    _store_state(position, state, (last.exec_time_ms, last.seq, last.exec_id))
    return entries


def _fold_entries(
    entries: Sequence[PositionLedgerEntry | _NewEntry], start: PositionState, direction: int
) -> PositionState:
    state = start
    for entry, step in zip(entries, apply_executions(start, entries, direction=direction), strict=True):
        state = step.state
        entry.flag = step.flag
        _set_after(entry, state)
    return state


def _log_flag(flag: str, exec_id: str, exec_type: str, position: Position) -> None:
    if flag == Flag.FORCED:
        log.warning("position_forced_trade", exec_type=exec_type, exec_id=exec_id, symbol=position.symbol)
    elif flag == Flag.OVERCLOSE:
        log.error(
            "position_overclose",
            exec_id=exec_id,
            symbol=position.symbol,
            position_idx=position.position_idx,
            note="a hedge side closed more than it held: an opening fill is missing",
        )
    elif flag in (Flag.RECORD_ONLY, Flag.NO_SIDE):
        log.warning("execution_recorded_only", exec_type=exec_type, exec_id=exec_id, flag=flag)


def _after_change(position: Position, *, exec_id: str, exec_type: str, executions: int = 1) -> None:
    # One event per position per change set (a stream message of many fills is one change):
    # the state after its last fill, which fill that was, and how many were applied.
    position_loss_warning_evaluate(position)
    payload = {**position_payload(position), "exec_id": exec_id, "exec_type": exec_type, "executions": executions}
    publish_event_on_commit(routing_key=POSITION_UPDATED, payload=payload)
