"""structlog wiring: one processor chain for stdlib and structlog loggers.

Context such as ``trace_id`` and ``signal_id`` is bound with
``structlog.contextvars.bind_contextvars`` and lands on every line.
"""

import structlog
import structlog.tracebacks

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
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
