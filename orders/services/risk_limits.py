"""Risk-limit rows: the global defaults seeded from settings, per-symbol overrides."""

from django.conf import settings
from django.db import IntegrityError, transaction

from orders.models import RiskLimit


def risk_limit_seed_global() -> bool:
    """Create the global row from the settings if it does not exist. Returns True if created."""
    if RiskLimit.objects.filter(symbol="").exists():
        return False
    try:
        with transaction.atomic():
            RiskLimit.objects.create(
                symbol="",
                max_position_size=settings.MAX_POSITION_SIZE,
                max_exposure=settings.MAX_EXPOSURE,
                max_order_size_ratio=settings.MAX_ORDER_SIZE_RATIO,
            )
    except IntegrityError:  # another process seeded it first
        return False
    return True
