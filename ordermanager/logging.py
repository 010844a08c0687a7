"""structlog wiring: one processor chain for stdlib and structlog loggers.

Context such as ``trace_id`` and ``signal_id`` is bound with
``structlog.contextvars.bind_contextvars`` and lands on every line.
"""

from decimal import Decimal

import structlog
import structlog.tracebacks

from ordermanager.core.formatting import number_text


def plain_decimals(logger, method_name, event_dict):
    """Decimal values as plain text (``200``, ``1.3``): never ``2E+2``, ``1.300000000000000000``, or the
    ``Decimal('...')`` repr the JSON renderer would fall back to (docs/decisions/0514)."""
    for key, value in event_dict.items():
        if isinstance(value, Decimal):
            event_dict[key] = number_text(value)
    return event_dict


_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    plain_decimals,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def make_formatter(json: bool = False) -> structlog.stdlib.ProcessorFormatter:
    if json:
        # Tracebacks as structured fields (exception type, value, frames), never one opaque string.
        # Frame locals are left out (they may hold a key or a secret).
        no_locals = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        tracebacks = structlog.processors.ExceptionRenderer(no_locals)
        renderers = [tracebacks, structlog.processors.JSONRenderer()]
    else:
        # Plain tracebacks: rich's formatter prints every frame's local variables, secrets included.
        renderers = [structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
    )


structlog.configure(
    # Drop filtered-out lines first: without it every log.info below the level
    # still paid for timestamps and context merging (a few per signal).
    processors=[structlog.stdlib.filter_by_level, *_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)
