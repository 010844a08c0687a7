"""Which exchange this process trades on (never the credentials): shown by /health/ready, logged at startup."""

from __future__ import annotations

import structlog
from django.conf import settings

from exchange.bybit.client import base_url_from_settings

log = structlog.get_logger("ordermanager.startup")


def exchange_profile() -> dict:
    return {"environment": settings.BYBIT_ENV, "base_url": base_url_from_settings(), "dry_run": settings.ENABLE_DRY_RUN}


def log_startup_profile(process: str) -> None:
    log.info("process_started", process=process, **exchange_profile())
