"""Record a difference between a stored position and the one its fills make (found by orders' validation)."""

from __future__ import annotations

from positions.models import PositionDiscrepancy


def position_discrepancy_record(
    *, position_id: int | None, category: str, symbol: str, position_idx: int, kind: str, stored: dict,
    expected: dict, repaired: bool, note: str,
) -> PositionDiscrepancy:  # fmt: skip
    """One row per difference; the note is cut to the column's 500 characters."""
    return PositionDiscrepancy.objects.create(
        position_id=position_id, category=category, symbol=symbol, position_idx=position_idx, kind=kind,
        stored=stored, expected=expected, repaired=repaired, note=note[:500],
    )  # fmt: skip
