"""What a long-running signal process does before its work: reconcile with the exchange.

``pipeline_startup`` runs before ``consume_signals`` takes a message and before
``process_signals`` drains the inbox: the global risk row is seeded and the
books are reconciled with the exchange (``reconcile_on_startup``, trigger
``startup``), so no signal is decided against a book that a crash or an outage
left wrong (a fill we missed, an order whose answer was lost). It never raises
because of the exchange: a failed run is recorded with its reason and the
process carries on (see docs/decisions/0310-startup-reconcile.md).
"""

from __future__ import annotations

from orders.models import ReconciliationRun
from orders.services.order_state_sync import reconcile_on_startup
from orders.services.risk_limits import risk_limit_seed_global


def pipeline_startup() -> ReconciliationRun | None:
    """Seed the global risk row and reconcile with the exchange; returns the startup run (None: skipped)."""
    risk_limit_seed_global()
    return reconcile_on_startup()
