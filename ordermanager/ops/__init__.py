"""The top of the project: what reads every domain app (docs/decisions/0422-import-contract.md).

Readiness and alert thresholds (``health``, ``alerts``), the scrape-time state series (``metrics_collector``,
``metrics_view``), the API's URL map and the views that read several apps (``api``), and the commands that
set up every app at once (``bootstrap``, ``setup_schedules``). It may import any app; no app imports it.
The rest of ``ordermanager`` (core, events, outbox, tracing, logging, env, settings, the API base classes...)
is the base below ``exchange`` and imports no domain app. The import contract in pyproject.toml checks both.
"""
