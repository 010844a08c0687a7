"""Trace context: the W3C ``traceparent`` header in and out, and which trace id a signal gets.

A signal's trace id is bound to the structlog context while it is handled (intake, processing) and from
there reaches every log line, every exchange-call audit row (``BybitClient._op``) and every outbox event
(``events._envelope``). Events leave with a ``traceparent`` header built from their trace id, so the
services downstream join the same trace. See docs/decisions/0322-trace-context.md.

Grammar (https://www.w3.org/TR/trace-context/, version 00)::

    traceparent = version "-" trace-id "-" parent-id "-" trace-flags
    version = 2 lowercase hex, not "ff"; trace-id = 32 lowercase hex, not all zeros;
    parent-id = 16 lowercase hex, not all zeros; trace-flags = 2 lowercase hex

Version 00 is exactly 55 characters. A later version (01-fe) is read the same way for its first 55
characters; anything after them must start with "-". Nothing is trimmed: a space anywhere is invalid.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import structlog

HEADER = "traceparent"
VERSION = "00"
SAMPLED = "01"
_HEX = re.compile(r"[0-9a-f]+")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_LONGEST_SHOWN = 80  # of an invalid header, in the warning


class TraceParentInvalid(ValueError):
    """The header breaks the grammar; ``reason`` says where, in words the producer's team can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TraceParent:
    version: str
    trace_id: str
    parent_id: str
    flags: str


@dataclass(frozen=True)
class SignalTrace:
    """The trace a signal gets: ``trace_id`` (Signal.trace_id), the producer's span (``parent_span_id``),
    where the id came from (``header`` | ``body`` | ``new``) and what to warn about (empty: nothing)."""

    trace_id: str
    parent_span_id: str
    source: str
    warnings: tuple[tuple[str, dict], ...] = ()


def traceparent_parse(value) -> TraceParent:
    """The header's fields, or ``TraceParentInvalid`` naming the first thing that is wrong."""
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise TraceParentInvalid("not ASCII text") from None
    if not isinstance(value, str):
        raise TraceParentInvalid(f"not text but {type(value).__name__}")
    if value != value.strip():
        raise TraceParentInvalid("leading or trailing whitespace")
    if len(value) < 55:
        raise TraceParentInvalid(f"{len(value)} characters, a traceparent has 55")
    version = value[:2]
    _hex_field(version, "version")
    if version == "ff":
        raise TraceParentInvalid("version ff is forbidden")
    if version == VERSION and len(value) != 55:
        raise TraceParentInvalid(f"{len(value)} characters, version 00 has exactly 55")
    if len(value) > 55 and value[55] != "-":
        raise TraceParentInvalid("text after the 55th character must start with '-'")
    for index, name in ((2, "version"), (35, "trace-id"), (52, "parent-id")):
        if value[index] != "-":
            raise TraceParentInvalid(f"expected '-' after the {name} at position {index + 1}, got {value[index]!r}")
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    _hex_field(trace_id, "trace-id")
    _hex_field(parent_id, "parent-id")
    _hex_field(flags, "trace-flags")
    if trace_id == "0" * 32:
        raise TraceParentInvalid("trace-id is all zeros")
    if parent_id == "0" * 16:
        raise TraceParentInvalid("parent-id is all zeros")
    return TraceParent(version=version, trace_id=trace_id, parent_id=parent_id, flags=flags)


def _hex_field(text: str, name: str) -> None:
    if not _HEX.fullmatch(text):
        upper = text.lower() != text and _HEX.fullmatch(text.lower())
        detail = "uppercase hex (must be lowercase)" if upper else "not lowercase hex"
        raise TraceParentInvalid(f"{name} {text!r} is {detail}")


def is_w3c_trace_id(value: str) -> bool:
    return bool(value) and bool(_TRACE_ID.fullmatch(value)) and value != "0" * 32


def trace_id_new() -> str:
    """A fresh W3C trace id (32 lowercase hex, random, never all zeros)."""
    while True:
        value = secrets.token_hex(16)
        if value != "0" * 32:
            return value


def traceparent_for(trace_id: str, span_id: str) -> str | None:
    """The outgoing header for ``trace_id`` with ``span_id`` as its parent, or None when ``trace_id`` is not a
    W3C trace id (a body ``trace_id`` may be any text up to 64 characters: it travels in the message only)."""
    if not is_w3c_trace_id(trace_id) or not re.fullmatch(r"[0-9a-f]{16}", span_id or "") or span_id == "0" * 16:
        return None
    return f"{VERSION}-{trace_id}-{span_id}-{SAMPLED}"


def current_trace_id() -> str:
    """The trace id of the work in progress in this thread/task (structlog context), or ""."""
    return str(structlog.contextvars.get_contextvars().get("trace_id") or "")


def signal_trace(*, header, body_trace_id: str) -> SignalTrace:
    """Which trace id a signal gets from its ``traceparent`` header (None: absent) and its body ``trace_id``.

    A valid header wins (it is what the producer's tracer joins on); a differing body id is kept in the
    stored message and named in a warning. Without a valid header the body id is used; without either, a
    fresh one. An invalid header never refuses the signal: it is named in a warning with the reason.
    """
    warnings: list[tuple[str, dict]] = []
    parent = None
    if header is not None:
        try:
            parent = traceparent_parse(header)
        except TraceParentInvalid as exc:
            warnings.append(("traceparent_invalid", {"reason": exc.reason, "traceparent": _shown(header)}))
    if parent is not None:
        if body_trace_id and body_trace_id != parent.trace_id:
            warnings.append(("trace_id_mismatch", {"header_trace_id": parent.trace_id,
                                                   "body_trace_id": body_trace_id,
                                                   "used": "header"}))
        return SignalTrace(parent.trace_id, parent.parent_id, "header", tuple(warnings))
    if body_trace_id:
        return SignalTrace(body_trace_id, "", "body", tuple(warnings))
    return SignalTrace(trace_id_new(), "", "new", tuple(warnings))


def _shown(value) -> str:
    text = value.decode("ascii", "replace") if isinstance(value, bytes | bytearray) else str(value)
    return text if len(text) <= _LONGEST_SHOWN else text[:_LONGEST_SHOWN] + "…"
