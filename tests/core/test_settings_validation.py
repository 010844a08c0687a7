"""A bad setting stops the process with one line naming the variable, the value and what is allowed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_check(**env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MAX_ORDER_SIZE_RATIO", "1.5", "MAX_ORDER_SIZE_RATIO='1.5' is out of range: must be at most 1"),
        ("MAX_ORDER_SIZE_RATIO", "-0.1", "MAX_ORDER_SIZE_RATIO='-0.1' is out of range: must be at least 0"),
        ("CANCEL_STALE_ORDER_TIMEOUT", "-5", "CANCEL_STALE_ORDER_TIMEOUT='-5' is out of range: must be at least 1"),
        ("BYBIT_ENV", "moon", "BYBIT_ENV='moon' is not allowed; choose one of: mainnet, testnet, demo, simulator"),
        ("ENABLE_DRY_RUN", "Flase", "ENABLE_DRY_RUN='Flase' is not a boolean"),
        ("POSITION_SNAPSHOT_INTERVAL", "often", "POSITION_SNAPSHOT_INTERVAL='often' is not a whole number"),
        ("MAX_EXPOSURE", "NaN", "MAX_EXPOSURE='NaN' must be a finite number"),
        # Limits are stored in NUMERIC(36, 18): refused at startup, not a DataError at the first signal (0317).
        ("MAX_EXPOSURE", "1e20", "MAX_EXPOSURE='1e20' is out of range: must be below 1,000,000,000,000,000,000 USDT "
                                 "(the largest amount the database stores)"),
        ("MAX_POSITION_VALUE", "1000000000000000000", "MAX_POSITION_VALUE='1000000000000000000' is out of range: "
                                                      "must be below 1,000,000,000,000,000,000 USDT"),
        ("MAX_POSITION_SIZE", "1e18", "MAX_POSITION_SIZE='1e18' is out of range: must be below "
                                      "1,000,000,000,000,000,000 base units"),
        ("MAX_POSITION_SIZE", "0.0000000000000000001", "MAX_POSITION_SIZE='0.0000000000000000001' has more than 18 "
                                                       "decimal places"),
        ("MAX_POSITION_SIZE", "-1", "MAX_POSITION_SIZE='-1' is out of range: must be at least 0"),
        ("MARKET_ORDER_CONFIDENCE_THRESHOLD", "abc", "MARKET_ORDER_CONFIDENCE_THRESHOLD='abc' is not a decimal"),
        ("BYBIT_API_RETRY_MULTIPLIER", "0.5", "BYBIT_API_RETRY_MULTIPLIER='0.5' is out of range"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL uses"),
    ],
)
def test_a_bad_setting_stops_the_process_with_one_clear_line(variable, value, expected):
    result = run_check(**{variable: value})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: ")
    assert expected in lines[0]


def test_real_exchange_without_credentials_is_refused():
    result = run_check(BYBIT_ENV="testnet", BYBIT_API_KEY="", BYBIT_API_SECRET="", DJANGO_SECRET_KEY="x" * 50)

    assert result.returncode == 2
    assert "BYBIT_ENV='testnet' needs BYBIT_API_KEY and BYBIT_API_SECRET" in result.stderr


def test_secret_file_is_read_and_its_value_never_printed(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t-value\n")
    result = run_check(BYBIT_ENV="testnet", BYBIT_API_KEY="k", BYBIT_API_SECRET_FILE=str(secret_file),
                       DJANGO_SECRET_KEY="x" * 50)

    assert result.returncode == 0, result.stderr
    assert "s3cr3t-value" not in result.stdout + result.stderr


def test_missing_secret_file_names_the_variable(tmp_path):
    result = run_check(BYBIT_API_SECRET_FILE=str(tmp_path / "nope"))

    assert result.returncode == 2
    assert "BYBIT_API_SECRET_FILE=" in result.stderr and "does not name a readable file" in result.stderr


def test_defaults_start_cleanly():
    result = run_check()

    assert result.returncode == 0, result.stderr
