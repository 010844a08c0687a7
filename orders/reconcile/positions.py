"""Positions: ours against /v5/position/list, matched by (symbol, positionIdx).

The repair order (docs/decisions/0602-position-repair-semantics.md):
1. A difference is first explained: every execution of the symbol in the last
   7 days is pulled and the missing ones go through the fill path; the
   exchange's row is fetched again and compared again. Before each further
   comparison the symbol's executions since shortly before the previous pull
   are pulled again (one short request): a difference is judged only when a
   comparison follows a pull that found nothing new and it stands still, and
   not while an order of the symbol is in flight (docs/decisions/0604).
2. What the fills cannot explain is *unexplained*: the symbol is put
   reduce-only (per-symbol RiskLimit row, with the reason) until a person
   clears it, and the discrepancy stays unresolved.
3. With ``fix_positions`` (the default; ``--no-fix`` turns it off) our book is
   then set to the exchange's size and entry by a labelled adjustment booked
   through the fill path (exec type MovePosition, execId ``recon-<run>-...``),
   so that the position still equals the fold of its executions.

An unknown position (the exchange did not list the symbol, or the query
failed) is recorded as unknown and left alone: never read as flat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from exchange.bybit.errors import BybitError
from exchange.bybit.types import ExecutionInfo, PositionInfo
from exchange.models import Instrument
from ordermanager.core.epoch import epoch_ms
from ordermanager.core.formatting import qty_text
from orders.models import Order, OrderStatus, RiskLimit
from orders.reconcile.exchange import PositionsView, positions_fetch, positions_fetch_symbol
from orders.reconcile.executions import MAX_LOOKBACK, backfill_run, now_ms
from orders.reconcile.report import Kind
from orders.services.fills import execution_apply
from orders.services.risk_limit_changes import risk_limit_create, risk_limit_update
from positions.models import Position
from positions.selectors import position_rows

ZERO = Decimal(0)
# Our entry price is the exact weighted average of the fills; Bybit rounds its
# avgPrice. A relative difference below this is rounding, not a discrepancy.
ENTRY_TOLERANCE = Decimal("0.000001")
ADJUSTMENT_EXEC_TYPE = "MovePosition"
# How many extra comparisons a difference gets to stand still before it is judged.
SETTLE_ROUNDS = 3
# The pull before each further comparison starts this long before the previous pull: an execution can
# appear in the exchange's list a little after its execTime, and the exchange's clock is not ours.
RECHECK_OVERLAP = timedelta(seconds=30)
_settle_wait = time.sleep  # the pause between comparisons (tests replace it to act "meanwhile")
HALT_SOURCE = "reconciliation"


@dataclass(frozen=True)
class Side:
    """One (symbol, idx) as both books see it; sizes signed (hedge idx 2 negative)."""

    symbol: str
    idx: int
    local_size: Decimal
    local_entry: Decimal
    exchange_size: Decimal
    exchange_entry: Decimal

    @property
    def size_differs(self) -> bool:
        return self.local_size != self.exchange_size

    @property
    def entry_differs(self) -> bool:
        if self.local_size == 0 or self.size_differs:
            return False
        base = max(abs(self.exchange_entry), Decimal("1e-18"))
        return abs(self.local_entry - self.exchange_entry) / base > ENTRY_TOLERANCE

    def as_dict(self) -> dict:
        return {
            "position_idx": self.idx,
            "ours": {"size": self.local_size, "avg_entry_price": self.local_entry},
            "exchange": {"size": self.exchange_size, "avg_entry_price": self.exchange_entry},
        }


def _local(ctx) -> dict[tuple[str, int], Position]:
    qs = position_rows(category=ctx.category, symbol=ctx.symbol or None)
    return {(p.symbol, p.position_idx): p for p in qs}


def _side(symbol: str, idx: int, local: Position | None, info: PositionInfo | None) -> Side:
    return Side(
        symbol=symbol,
        idx=idx,
        local_size=local.signed_size if local else ZERO,
        local_entry=local.avg_entry_price if local else ZERO,
        exchange_size=info.signed_size if info else ZERO,
        exchange_entry=info.avg_price if info and info.size else ZERO,
    )


def positions_reconcile(ctx) -> None:
    """Compare every position either side holds; explain, halt and repair per the module docstring."""
    t_snapshot = timezone.now()
    local = _local(ctx)
    held = {key for key, p in local.items() if p.size != 0}
    view = positions_fetch(ctx.client, category=ctx.category, symbol=ctx.symbol, held=held)
    keys = held | {key for key, info in view.rows.items() if info.size != 0}
    if ctx.symbol:
        keys = {k for k in keys if k[0] == ctx.symbol}
    mismatched: dict[str, list[Side]] = {}
    ctx.rec.step("positions", 0, len(keys))
    for n, (symbol, idx) in enumerate(sorted(keys), 1):
        ctx.rec.add("checked")
        ctx.rec.step("positions", n, len(keys))
        pos = local.get((symbol, idx))
        if pos is not None and pos.updated_at >= t_snapshot:
            continue  # a live fill moved it after our snapshot; the next run compares again
        state, info = view.state(symbol, idx)
        if state == "unknown":
            _record_unknown(ctx, symbol, idx, pos, view.unknown.get(symbol, "not listed by the exchange"))
            continue
        side = _side(symbol, idx, pos, info)
        if side.size_differs:
            mismatched.setdefault(symbol, []).append(side)
        elif side.entry_differs:
            _record_entry(ctx, side)
    for symbol, sides in mismatched.items():
        _explain_or_halt(ctx, symbol, sides)


def _record_unknown(ctx, symbol: str, idx: int, pos: Position | None, why: str) -> None:
    ctx.rec.discrepancy(
        kind=Kind.POSITION_UNKNOWN,
        symbol=symbol,
        before={"position_idx": idx, "ours": {"size": pos.signed_size if pos else ZERO}},
        after={},
        resolved=False,
        note=f"exchange position unknown ({why}); left unchanged, not read as flat",
    )


def _record_entry(ctx, side: Side) -> None:
    ctx.rec.discrepancy(
        kind=Kind.POSITION_ENTRY_PRICE,
        symbol=side.symbol,
        before=side.as_dict(),
        after={},
        resolved=False,
        note="same size, different average entry price: the fills we hold price it differently",
    )


def _compare_symbol(ctx, symbol: str, idxs: set[int]) -> tuple[list[Side], str | None]:
    """Fresh exchange rows for one symbol against our rows now; (differences, unknown reason)."""
    view = PositionsView()
    positions_fetch_symbol(ctx.client, view, category=ctx.category, symbol=symbol)
    if symbol in view.unknown:
        return [], view.unknown[symbol]
    local = {p.position_idx: p for p in position_rows(category=ctx.category, symbol=symbol)}
    idxs = idxs | {idx for (s, idx), info in view.rows.items() if s == symbol and info.size != 0}
    idxs |= {idx for idx, p in local.items() if p.size != 0}
    sides = [_side(symbol, idx, local.get(idx), view.rows.get((symbol, idx))) for idx in sorted(idxs)]
    return [s for s in sides if s.size_differs], None


def _explain_or_halt(ctx, symbol: str, sides: list[Side]) -> None:
    before = {"sides": [s.as_dict() for s in sides]}
    if ctx.dry_run:
        ctx.rec.discrepancy(kind=Kind.POSITION_MISMATCH, symbol=symbol, before=before, after={}, resolved=False,
                            note="dry run: not explained, repaired or halted")  # fmt: skip
        return
    pulled_ms = now_ms()
    backfilled = _backfill_symbol(ctx, symbol)
    if backfilled is None:
        _unfetched(ctx, symbol, before)
        return
    remaining, unknown = _compare_symbol(ctx, symbol, {s.idx for s in sides})
    if remaining and not unknown:
        outcome = _settle(ctx, symbol, remaining, pulled_ms)
        remaining, unknown, backfilled = outcome.sides, outcome.unknown, backfilled + outcome.backfilled
        if outcome.unfetched:
            _unfetched(ctx, symbol, before)
            return
        if remaining and not outcome.settled:
            note = ("position differs while the symbol is trading (each comparison saw a different difference "
                    "or new executions); not judged, compared again next run")  # fmt: skip
            ctx.rec.discrepancy(kind=Kind.POSITION_MISMATCH, symbol=symbol, before=before,
                                after={"last": [s.as_dict() for s in remaining]}, resolved=False, note=note)
            return
    if unknown:
        ctx.rec.discrepancy(kind=Kind.POSITION_UNKNOWN, symbol=symbol, before=before, after={}, resolved=False,
                            note=f"position differed; re-reading it failed ({unknown})")  # fmt: skip
        return
    if not remaining:
        ctx.rec.add("updated")
        ctx.rec.discrepancy(kind=Kind.POSITION_EXPLAINED, symbol=symbol, before=before,
                            after={"backfilled": backfilled}, resolved=True,
                            note=f"explained by {backfilled} execution(s) the stream had not delivered")  # fmt: skip
        return
    flying = _orders_in_flight(ctx, symbol)
    if flying:
        note = ("position differs while order(s) of the symbol are in flight (" + ", ".join(flying[:5])
                + "): their fills may still be on their way; not judged, compared again next run")  # fmt: skip
        ctx.rec.discrepancy(kind=Kind.POSITION_MISMATCH, symbol=symbol, before=before,
                            after={"last": [s.as_dict() for s in remaining], "in_flight": flying[:20]},
                            resolved=False, note=note)  # fmt: skip
        return
    _unexplained(ctx, symbol, before, remaining, backfilled)


def _unfetched(ctx, symbol: str, before: dict) -> None:
    # Without the fills we cannot tell explained from unexplained: no halt, no adjustment on a guess.
    note = "position differs; its executions could not be fetched, so it was not judged"
    ctx.rec.discrepancy(kind=Kind.POSITION_MISMATCH, symbol=symbol, before=before, after={}, resolved=False,
                        note=note)  # fmt: skip


@dataclass
class Settled:
    sides: list[Side]
    unknown: str | None = None
    settled: bool = False
    unfetched: bool = False
    backfilled: int = 0  # executions booked by the pulls between comparisons


def _settle(ctx, symbol: str, sides: list[Side], pulled_ms: int) -> Settled:
    """Judge a difference only once it stands still and the exchange lists no execution we lack.

    While the desk trades the symbol the two books are read a moment apart and
    fills are in flight on the private stream, so a live difference can be
    nothing but timing (a second consume_signals process reconciling at start-up
    while the first one trades): the exchange's position moves at once, our fill
    arrives later. Each round pulls the symbol's executions since shortly before
    the previous pull and then compares; the difference is settled only when that
    pull booked nothing and the comparison equals the previous one. A real outside
    change, by contrast, shows the same difference every time with nothing to book.
    """
    out = Settled(sides=sides)
    for _ in range(SETTLE_ROUNDS):
        _settle_wait(settings.RECONCILE_SETTLE_SECONDS)
        started = now_ms()
        booked = _backfill_recent(ctx, symbol, since_ms=pulled_ms)
        if booked is None:
            out.unfetched = True
            return out
        pulled_ms = started
        out.backfilled += booked
        again, unknown = _compare_symbol(ctx, symbol, {s.idx for s in out.sides})
        if unknown or not again or (booked == 0 and again == out.sides):
            out.sides, out.unknown, out.settled = again, unknown, True
            return out
        out.sides = again
    return out


def _backfill_symbol(ctx, symbol: str) -> int | None:
    """Backfill 7 days of the symbol's executions; None when they could not be fetched."""
    start = epoch_ms(timezone.now() - MAX_LOOKBACK)
    try:
        ctx.backfill.offer(ctx.client.get_executions(category=ctx.category, symbol=symbol, start_ms=start,
                                                     end_ms=now_ms(), refused=ctx.backfill.refused))  # fmt: skip
    except BybitError as exc:
        ctx.rec.discrepancy(kind=Kind.LOOKUP_FAILED, symbol=symbol, resolved=False,
                            note=f"executions of {symbol} (7 days) could not be fetched: {exc}")  # fmt: skip
        return None
    return backfill_run(ctx)


def _backfill_recent(ctx, symbol: str, *, since_ms: int) -> int | None:
    """Pull the symbol's executions since shortly before ``since_ms`` (one request in the common case) and
    book the ones we lack; how many were booked, None when they could not be fetched. Rows this run already
    saw (booked, or refused and recorded) are not offered again."""
    start = since_ms - int(RECHECK_OVERLAP.total_seconds() * 1000)
    refused: list = []
    try:
        rows = ctx.client.get_executions(category=ctx.category, symbol=symbol, start_ms=start, end_ms=now_ms(),
                                         refused=refused)  # fmt: skip
    except BybitError as exc:
        ctx.rec.discrepancy(kind=Kind.LOOKUP_FAILED, symbol=symbol, resolved=False,
                            note=f"recent executions of {symbol} could not be fetched: {exc}")  # fmt: skip
        return None
    fresh = [r for r in rows if r.exec_id not in ctx.backfill.seen]
    refused = [(item, why) for item, why in refused if str(item.get("execId") or "") not in ctx.backfill.refused_ids]
    if not fresh and not refused:
        return 0
    ctx.backfill.refused.extend(refused)
    ctx.backfill.offer(fresh)
    return backfill_run(ctx)


def _orders_in_flight(ctx, symbol: str) -> list[str]:
    """Our orders of the symbol whose fills may be on their way (orderLinkIds): acknowledged within
    RECONCILE_INFLIGHT_SECONDS with nothing filled yet, or pending_submit (a live hold may keep one that
    long after its create, so those count up to ORDER_HOLD_MAX_SECONDS old; older ones the orders step settles)."""
    now = timezone.now()
    ours = Order.objects.filter(category=ctx.category, symbol=symbol, is_external=False)
    quiet = ours.filter(status=OrderStatus.NEW, filled_qty=0,
                        created_at__gte=now - timedelta(seconds=settings.RECONCILE_INFLIGHT_SECONDS))  # fmt: skip
    held_for = max(settings.RECONCILE_INFLIGHT_SECONDS, settings.ORDER_HOLD_MAX_SECONDS)
    pending = ours.filter(status=OrderStatus.PENDING_SUBMIT, created_at__gte=now - timedelta(seconds=held_for))
    return sorted((pending | quiet).values_list("order_link_id", flat=True))


def _qty_step(category: str, symbol: str) -> Decimal | None:
    """The symbol's cached quantity step (no exchange call), for showing sizes; None when not cached."""
    return Instrument.objects.filter(category=category, symbol=symbol).values_list("qty_step", flat=True).first()


def _unexplained(ctx, symbol: str, before: dict, sides: list[Side], backfilled: int) -> None:
    step = _qty_step(ctx.category, symbol)
    reason = "position differs from the exchange and the fills do not explain it: " + (
        "; ".join(f"idx {s.idx} ours {qty_text(s.local_size, step)} vs exchange {qty_text(s.exchange_size, step)}"
                  for s in sides)  # fmt: skip
    )
    halted = symbol_reduce_only(symbol=symbol, reason=reason, run=ctx.run)
    after: dict = {"backfilled": backfilled, "reduce_only": True}
    if ctx.fix_positions:
        after["adjustments"] = [e.exec_id for e in position_adjust(ctx, sides)]
        after["still_differs"] = [s.as_dict() for s in _compare_symbol(ctx, symbol, {s.idx for s in sides})[0]]
        ctx.rec.add("updated")
    note = reason + (
        "; our book set to the exchange's by a labelled adjustment" if ctx.fix_positions else "; --no-fix: book left"
    )
    note += "; symbol set reduce-only until a person clears it" if halted else "; symbol was already reduce-only"
    ctx.rec.discrepancy(kind=Kind.POSITION_MISMATCH, symbol=symbol, before=before, after=after, resolved=False,
                        note=note)  # fmt: skip


def position_adjust(ctx, sides: list[Side]) -> list[ExecutionInfo]:
    """Book the exchange's size and entry through the fill path: close ours at our own entry
    (no PnL invented), open the exchange's at its entry. Idempotent per run (execIds)."""
    booked = []
    for side in sides:
        legs = []
        if side.local_size != 0:
            legs.append(("close", "Sell" if side.local_size > 0 else "Buy", abs(side.local_size), side.local_entry))
        if side.exchange_size != 0:
            legs.append(("open", "Buy" if side.exchange_size > 0 else "Sell", abs(side.exchange_size),
                         side.exchange_entry))  # fmt: skip
        for leg, direction, qty, price in legs:
            info = _adjustment(ctx, side, leg=leg, side=direction, qty=qty, price=price)
            if execution_apply(execution=info, source="adjust"):
                booked.append(info)
    return booked


def _adjustment(ctx, s: Side, *, leg: str, side: str, qty: Decimal, price: Decimal) -> ExecutionInfo:
    return ExecutionInfo(
        category=ctx.category,
        symbol=s.symbol,
        exec_id=f"recon-{ctx.run.pk}-{s.symbol}-{s.idx}-{leg}",
        order_id="",
        order_link_id="",
        side=side,
        exec_type=ADJUSTMENT_EXEC_TYPE,
        exec_qty=qty,
        exec_price=price,
        exec_value=qty * price,
        exec_fee=ZERO,
        fee_currency="USDT",
        is_maker=False,
        closed_size=None,
        leaves_qty=None,
        exec_time_ms=now_ms(),
        seq=None,
        position_idx=s.idx,
    )


def symbol_reduce_only(*, symbol: str, reason: str, run) -> bool:
    """Put the symbol reduce-only with the reason (its RiskLimit row, created from the global
    limits if missing; audited). False if it already was reduce-only or halted."""
    text = f"reconciliation #{run.pk}: {reason}"[:500]
    row = RiskLimit.objects.filter(symbol=symbol).first()
    if row is None:
        try:
            risk_limit_create(symbol=symbol, values={"reduce_only": True, "halt_reason": text}, reason=text,
                              source=HALT_SOURCE)  # fmt: skip
            return True
        except ValidationError:  # created by someone else meanwhile
            row = RiskLimit.objects.get(symbol=symbol)
    if row.reduce_only or row.trading_halted:
        return False
    risk_limit_update(risk_limit=row, changes={"reduce_only": True, "halt_reason": text}, reason=text,
                      source=HALT_SOURCE)  # fmt: skip
    return True
