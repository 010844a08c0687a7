"""A production profile cannot be half paper: real secrets, HTTPS, a Bybit host, no simulator (issue 13).

Each case starts ``manage.py`` in a child process with an environment of its own, as an operator would.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Variables of this test run that would leak into the child's settings.
_RUN_ONLY = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SIGNAL_BROKER_URL", "BYBIT_ENV",
             "BYBIT_BASE_URL", "BYBIT_API_KEY", "BYBIT_API_SECRET", "DJANGO_SECRET_KEY", "HTTPS")  # fmt: skip


def manage(*args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _RUN_ONLY}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def production_example(tmp_path) -> dict[str, str]:
    """The commented production block of env.example, its secret files replaced by files of this test."""
    text = (ROOT / "env.example").read_text()
    block = text.split("# --- Production example", 1)[1].split("# --- end of production example", 1)[0]
    env = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(\S+)$", block, flags=re.MULTILINE))
    assert env["BYBIT_ENV"] == "mainnet" and "DJANGO_SECRET_KEY_FILE" in env
    for name in [n for n in env if n.endswith("_FILE")]:
        secret = tmp_path / name.lower()
        secret.write_text(os.urandom(40).hex())
        env[name] = str(secret)
    return env


def one_line_refusal(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: ")
    return lines[0]


def test_check_deploy_passes_with_the_production_example(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production_example(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_when_https_is_turned_off(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production_example(tmp_path), HTTPS="false")

    assert result.returncode != 0
    for check_id in ("security.W008", "security.W012", "security.W016", "security.W004"):
        assert check_id in result.stderr, result.stderr


@pytest.mark.parametrize("bybit_env", ["mainnet", "testnet", "demo"])
def test_a_real_exchange_without_a_secret_key_stops_with_one_line(bybit_env):
    line = one_line_refusal(manage("check", BYBIT_ENV=bybit_env, BYBIT_API_KEY="k", BYBIT_API_SECRET="s"))

    assert "DJANGO_SECRET_KEY is empty" in line and "insecure" not in line


def test_the_paper_setup_still_starts_without_a_secret_key():
    result = manage("check", BYBIT_ENV="simulator")

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://api.bybit.com", "must use https"),
        ("https://api.bybit.com.evil.example", "is not a Bybit host"),
        ("https://127.0.0.1:8765", "is not a Bybit host"),
        ("http://127.0.0.1:8765", "must use https"),
        ("https://user:pw@api.bybit.com", "must not carry credentials"),
    ],
)
def test_a_base_url_off_bybit_is_refused_outside_the_paper_setup(url, problem):
    line = one_line_refusal(manage("check", BYBIT_ENV="testnet", BYBIT_BASE_URL=url, BYBIT_API_KEY="k",
                                   BYBIT_API_SECRET="s", DJANGO_SECRET_KEY="x" * 50))  # fmt: skip

    assert f"BYBIT_BASE_URL={url!r} {problem}" in line


@pytest.mark.parametrize("url", ["https://api-testnet.bybit.com", "https://api.bytick.com/"])
def test_bybit_hosts_are_accepted(url):
    result = manage("check", BYBIT_ENV="testnet", BYBIT_BASE_URL=url, BYBIT_API_KEY="k", BYBIT_API_SECRET="s",
                    DJANGO_SECRET_KEY="x" * 50)  # fmt: skip

    assert result.returncode == 0, result.stderr


def test_the_paper_setup_may_point_anywhere():
    result = manage("check", BYBIT_ENV="simulator", BYBIT_BASE_URL="http://127.0.0.1:9999")

    assert result.returncode == 0, result.stderr


def test_the_simulator_refuses_to_start_outside_the_paper_setup():
    result = manage("bybit_simulator", "--port", "1", BYBIT_ENV="testnet", BYBIT_API_KEY="live-key",
                    BYBIT_API_SECRET="live-secret", DJANGO_SECRET_KEY="x" * 50)  # fmt: skip

    assert result.returncode != 0
    assert "the simulator runs only with BYBIT_ENV=simulator (now 'testnet')" in result.stderr
    assert "live-key" not in result.stdout + result.stderr and "live-secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(("bybit_env", "procfile"), [("simulator", "Procfile.paper"), ("mainnet", "Procfile")])
def test_make_run_starts_the_simulator_only_in_the_paper_setup(bybit_env, procfile, tmp_path):
    env = production_example(tmp_path) if bybit_env == "mainnet" else {"BYBIT_ENV": "simulator"}
    result = manage("procfile", **env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == procfile
    names = [line.split(":", 1)[0] for line in (ROOT / procfile).read_text().splitlines() if line.strip()]
    assert ("simulator" in names) == (bybit_env == "simulator")


def test_the_two_procfiles_differ_only_by_the_simulator():
    live = (ROOT / "Procfile").read_text().splitlines()
    paper = (ROOT / "Procfile.paper").read_text().splitlines()

    assert [line for line in paper if not line.startswith("simulator:")] == live


@pytest.mark.parametrize("variable", ["PORT", "WEB_PORT"])
def test_the_web_port_decides_every_url_printed_or_registered(variable):
    shown = manage("start_ingest", "--show", BYBIT_ENV="simulator", **{variable: "8123"})

    assert shown.returncode == 0, shown.stderr
    assert '"callback_url": "ws://127.0.0.1:8123/ws/gateway/"' in shown.stdout
    assert "WEB_PORT=$(WEB_PORT)" in (ROOT / "Makefile").read_text()
    for name in ("Procfile", "Procfile.paper"):  # uvicorn binds the port the settings print (shell expansion)
        assert procfile_web_port(name, **{variable: "8123"}) == "8123"


@pytest.mark.parametrize("name", ["Procfile", "Procfile.paper"])
def test_the_web_line_binds_web_port_before_port_before_8000(name):
    # make run hands honcho WEB_PORT (honcho sets its own PORT per process); a supervisor may set only PORT.
    assert procfile_web_port(name, WEB_PORT="8200", PORT="5000") == "8200"
    assert procfile_web_port(name, PORT="5000") == "5000"
    assert procfile_web_port(name) == "8000"


def procfile_web_port(name: str, **env) -> str:
    """The --port the Procfile's web line gets from a shell, as honcho runs it, with only ``env`` set."""
    line = next(line for line in (ROOT / name).read_text().splitlines() if line.startswith("web:"))
    port_arg = re.search(r"--port (\S+)", line).group(1)
    done = subprocess.run(["bash", "-c", f'printf %s "{port_arg}"'], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=10)  # fmt: skip
    return done.stdout
