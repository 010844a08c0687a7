"""The W3C traceparent grammar, checked strictly, and which trace id a signal gets (docs/decisions/0322)."""

import re

import pytest

from ordermanager.tracing import (
    TraceParentInvalid,
    signal_trace,
    trace_id_new,
    traceparent_for,
    traceparent_parse,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


def test_the_spec_example_is_read_field_by_field():
    parent = traceparent_parse(VALID)
    assert (parent.version, parent.trace_id, parent.parent_id, parent.flags) == ("00", TRACE, SPAN, "01")
    assert traceparent_parse(VALID.encode()).trace_id == TRACE  # an AMQP header may arrive as bytes
    assert traceparent_parse(f"00-{TRACE}-{SPAN}-00").flags == "00"  # not sampled is still a trace


def test_a_later_version_is_read_by_its_first_55_characters():
    assert traceparent_parse(f"cc-{TRACE}-{SPAN}-01-what-the-future-holds").trace_id == TRACE
    assert traceparent_parse(f"01-{TRACE}-{SPAN}-09").flags == "09"


@pytest.mark.parametrize(("header", "reason"), [
    (VALID.upper(), "trace-id '4BF92F3577B34DA6A3CE929D0E0E4736' is uppercase hex"),  # "00" survives upper()
    (f"00-{TRACE.upper()}-{SPAN}-01", "is uppercase hex (must be lowercase)"),
    (f"00-{TRACE}-{SPAN.upper()}-01", "parent-id '00F067AA0BA902B7' is uppercase hex"),
    (f"00-{TRACE}-{SPAN}-0A", "trace-flags '0A' is uppercase hex"),
    (f"0A-{TRACE}-{SPAN}-01", "version '0A' is uppercase hex"),
    (f"00-{TRACE[:-1]}-{SPAN}-01", "54 characters, a traceparent has 55"),
    (f"00-{TRACE}0-{SPAN}-01", "56 characters, version 00 has exactly 55"),
    (f"00-{TRACE[:-1]}-{SPAN}0-01", "expected '-' after the trace-id at position 36"),
    (f"00-{TRACE}-{SPAN[:-1]}-011", "expected '-' after the parent-id at position 53"),
    (f"00-{TRACE}-{SPAN}-01-x", "57 characters, version 00 has exactly 55"),
    (f"00-{'0' * 32}-{SPAN}-01", "trace-id is all zeros"),
    (f"00-{TRACE}-{'0' * 16}-01", "parent-id is all zeros"),
    (f"ff-{TRACE}-{SPAN}-01", "version ff is forbidden"),
    (f"cc-{TRACE}-{SPAN}-01x", "text after the 55th character must start with '-'"),
    (f" {VALID}", "leading or trailing whitespace"),
    (f"{VALID} ", "leading or trailing whitespace"),
    (f"00 -{TRACE}-{SPAN}-01"[:55], "expected '-' after the version at position 3"),
    (f"00-{TRACE[:16]} {TRACE[17:]}-{SPAN}-01", "trace-id '4bf92f3577b34da6 3ce929d0e0e4736' is not lowercase hex"),
    (f"00_{TRACE}_{SPAN}_01", "expected '-' after the version"),
    (f"00-{TRACE}-{SPAN}-01,00-{TRACE}-{SPAN}-01", "111 characters, version 00 has exactly 55"),  # two headers
    ("", "0 characters"),
    (b"\xff" * 55, "not ASCII text"),
    (55, "not text but int"),
    (f"00-{TRACE[:-1]}g-{SPAN}-01", "is not lowercase hex"),
])
def test_anything_off_the_grammar_is_invalid_with_the_reason(header, reason):
    with pytest.raises(TraceParentInvalid) as caught:
        traceparent_parse(header)
    assert reason in caught.value.reason


def test_a_valid_header_wins_over_a_different_body_trace_id_which_is_named_in_a_warning():
    trace = signal_trace(header=VALID, body_trace_id="body-7")
    assert (trace.trace_id, trace.parent_span_id, trace.source) == (TRACE, SPAN, "header")
    assert trace.warnings == (("trace_id_mismatch", {"header_trace_id": TRACE, "body_trace_id": "body-7",
                                                     "used": "header"}),)
    assert signal_trace(header=VALID, body_trace_id=TRACE).warnings == ()  # the same id twice: nothing to say


def test_without_a_valid_header_the_body_id_or_a_fresh_one_is_used():
    trace = signal_trace(header=f"00-{'0' * 32}-{SPAN}-01", body_trace_id="body-7")
    assert (trace.trace_id, trace.parent_span_id, trace.source) == ("body-7", "", "body")
    [(event, fields)] = trace.warnings
    assert event == "traceparent_invalid" and fields["reason"] == "trace-id is all zeros"
    assert fields["traceparent"] == f"00-{'0' * 32}-{SPAN}-01"
    fresh = signal_trace(header=None, body_trace_id="")
    assert fresh.source == "new" and fresh.warnings == () and re.fullmatch("[0-9a-f]{32}", fresh.trace_id)
    assert signal_trace(header=None, body_trace_id="").trace_id != fresh.trace_id
    assert len(signal_trace(header="x" * 500, body_trace_id="").warnings[0][1]["traceparent"]) == 81  # capped


def test_the_outgoing_header_is_built_only_from_a_w3c_trace_id():
    assert traceparent_for(TRACE, SPAN) == VALID
    assert traceparent_parse(traceparent_for(trace_id_new(), SPAN)).parent_id == SPAN
    for not_w3c in ("", "body-7", TRACE[:16], TRACE.upper(), "0" * 32):
        assert traceparent_for(not_w3c, SPAN) is None
    assert traceparent_for(TRACE, "0" * 16) is None
