"""``manage.py bybit_simulator`` serves the simulator with the faults given as arguments."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_command_starts_a_simulator_with_faults_from_arguments():
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ordermanager.settings.test", "BYBIT_ENV": "simulator"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "bybit_simulator", "--host", "127.0.0.1", "--port", str(port),
         "--api-key", "cmd-key", "--api-secret", "cmd-secret", "--seed", "3", "--server-error", "1",
         "--fault-paths", "/v5/order/create", "--rate-limit-scale", "2",
         "--instruments", '[{"symbol": "CMDUSDT", "price": "10.00", "tickSize": "0.01", "qtyStep": "0.1"}]'],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                if httpx.get(f"{base}/v5/market/time", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the simulator did not come up"
            time.sleep(0.05)
        faults = httpx.get(f"{base}/sim/faults").json()
        assert (faults["server_error"], faults["seed"], faults["paths"]) == (1.0, 3, ["/v5/order/create"])
        assert httpx.post(f"{base}/v5/order/create", content=b"{}").status_code == 503
        assert httpx.get(f"{base}/sim/rate-limits").json()["limits"]["/v5/order/create"] == 20
        listed = httpx.get(f"{base}/v5/market/instruments-info", params={"category": "linear"}).json()
        assert listed["result"]["list"][-1]["symbol"] == "CMDUSDT"
        httpx.post(f"{base}/sim/reset").raise_for_status()
        assert httpx.get(f"{base}/sim/instruments").json()["list"][-1]["symbol"] == "CMDUSDT", "kept by reset"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--rate-limit", "1.5"], "rate_limit must be between 0 and 1"),
        (["--instruments", '[{"symbol": "CMDUSDT", "price": 10}]'], "--instruments: CMDUSDT: tickSize is required"),
        (["--instruments", "/nonexistent/instruments.json"], "--instruments: cannot read /nonexistent/"),
    ],
)
def test_command_refuses_bad_arguments(arguments, message):
    result = subprocess.run(
        [sys.executable, "manage.py", "bybit_simulator", *arguments, "--api-key", "k", "--api-secret", "s"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "ordermanager.settings.test"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_command_takes_the_paper_credentials_never_the_bybit_keys(settings, monkeypatch):
    from django.core.management import call_command

    from exchange.management.commands import bybit_simulator

    settings.BYBIT_ENV = "simulator"
    settings.BYBIT_API_KEY, settings.BYBIT_API_SECRET = "live-key", "live-secret"
    settings.SIMULATOR_API_KEY, settings.SIMULATOR_API_SECRET = "paper-key", "paper-secret"
    built = {}
    real_build = bybit_simulator.build_app

    def build(**kwargs):
        built.update(kwargs)
        return real_build(**kwargs)

    monkeypatch.setattr(bybit_simulator, "build_app", build)
    monkeypatch.setattr(bybit_simulator.uvicorn, "run", lambda *a, **k: None)

    call_command("bybit_simulator", "--port", "1", stdout=open(os.devnull, "w"))  # noqa: SIM115

    assert (built["api_key"], built["api_secret"]) == ("paper-key", "paper-secret")


def test_the_ws_gateway_key_is_compared_in_constant_time(monkeypatch):
    from exchange.simulator import gateway
    from exchange.simulator.engine import SimEngine

    compared = []
    real = gateway.hmac.compare_digest
    monkeypatch.setattr(gateway.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    hub = gateway.GatewayHub(SimEngine(seed=1), api_key="the-key")

    assert hub.check_key("the-key") == "the-key"
    with pytest.raises(gateway.GatewayError):
        hub.check_key("the-kez")
    assert compared == [(b"the-key", b"the-key"), (b"the-kez", b"the-key")]
