"""The alert settings are read and checked like every other: a bad value stops the process with one line."""

import pytest

from tests.core.test_settings_validation import run_check


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ALERT_EXCHANGE_ERROR_RATE": "0"}, "ALERT_EXCHANGE_ERROR_RATE='0' is out of range"),
        ({"ALERT_EXCHANGE_ERROR_RATE": "1.5"}, "ALERT_EXCHANGE_ERROR_RATE='1.5' is out of range: must be at most 1"),
        ({"ALERT_INBOX_BACKLOG": "lots"}, "ALERT_INBOX_BACKLOG='lots' is not a whole number"),
        ({"ALERT_HEARTBEAT_AGE_SECONDS": "8", "SIGNAL_HEARTBEAT_INTERVAL": "5"},
         "ALERT_HEARTBEAT_AGE_SECONDS=8 is out of range: must be more than twice SIGNAL_HEARTBEAT_INTERVAL=5"),
    ],
)
def test_a_bad_alert_setting_stops_the_process_with_one_clear_line(overrides, expected):
    result = run_check(**overrides)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Configuration error: "), result.stderr
    assert expected in lines[0]
