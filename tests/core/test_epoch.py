"""Epoch milliseconds, both ways, exactly."""

from datetime import UTC, datetime, timedelta, timezone

from ordermanager.core.epoch import epoch_ms, from_epoch_ms


def test_whole_milliseconds_since_the_epoch():
    assert epoch_ms(datetime(2026, 11, 23, 10, 15, 0, 123000, tzinfo=UTC)) == 1795428900123
    assert epoch_ms(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=7)) == 1767225600007


def test_sub_millisecond_parts_are_dropped_and_offsets_respected():
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 0, 1999, tzinfo=UTC)) == 1
    assert epoch_ms(datetime(1970, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))) == 0


def test_round_trip():
    assert from_epoch_ms(1795428900123) == datetime(2026, 11, 23, 10, 15, 0, 123000, tzinfo=UTC)
    assert epoch_ms(from_epoch_ms(1795428900123)) == 1795428900123
