"""Run the Bybit V5 simulator (paper exchange): ``manage.py bybit_simulator --port 8765``."""

from __future__ import annotations

import json
from pathlib import Path

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exchange.simulator.app import build_app
from exchange.simulator.faults import DROP_MODES, FaultConfig, FaultConfigError

FAULT_FLAGS = {
    "rate_limit": "share of requests answered retCode 10006 (not processed)",
    "http_429": "share of requests answered HTTP 429 (not processed)",
    "server_error": "share of requests answered HTTP 503 (not processed)",
    "timeout": "share of requests held --timeout-seconds, then processed",
    "drop_response": "share of requests processed whose answer is replaced by HTTP 504 (or delayed)",
    "drop_events": "share of private events not delivered",
    "duplicate_events": "share of private events delivered twice",
    "reorder_events": "share of private events delivered after the next one",
}


class Command(BaseCommand):
    help = "Start the Bybit V5 simulator (REST, control API under /sim/, ws-gateway API) in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.SIMULATOR_HOST)
        parser.add_argument("--port", type=int, default=settings.SIMULATOR_PORT)
        parser.add_argument("--api-key", default=None, help="paper key (default SIMULATOR_API_KEY, sim-key)")
        parser.add_argument("--api-secret", default=None, help="paper secret (default SIMULATOR_API_SECRET)")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--ws-gateway-key", default=None,
                            help="key required by the ws-gateway API (default WS_GATEWAY_API_KEY; empty: any key)")
        parser.add_argument("--tick-interval", type=float, default=None,
                            help="seconds between random-walk price steps (default: prices move only on /sim/tick)")
        parser.add_argument("--rate-limit-scale", type=float, default=1.0,
                            help="multiplier on Bybit's per-endpoint budgets (1 = Bybit's)")
        parser.add_argument("--initial-balance", default="100000")
        parser.add_argument("--slippage", default="0")
        parser.add_argument("--taker-fee", default="0.00055")
        parser.add_argument("--maker-fee", default="0.0002")
        for name, text in FAULT_FLAGS.items():
            parser.add_argument("--" + name.replace("_", "-"), type=float, default=0.0, help=text)
        parser.add_argument("--timeout-seconds", type=float, default=FaultConfig.timeout_seconds)
        parser.add_argument("--drop-response-mode", choices=DROP_MODES, default="504")
        parser.add_argument("--fault-paths", nargs="*", default=[], help="limit request faults to these paths")
        parser.add_argument(
            "--instruments", default=None, metavar="JSON_OR_FILE",
            help="more linear instruments, listed from the start and after every reset: a JSON list (inline, or "
                 "the path of a file holding it) of Bybit instruments-info items plus \"price\", or compact "
                 "{symbol, price, tickSize, qtyStep, minOrderQty, maxOrderQty, maxMktOrderQty, minNotionalValue}")

    def handle(self, *args, **opts):
        if settings.BYBIT_ENV != "simulator":
            # A paper exchange beside real keys could receive them (and answer fills that never happened).
            raise CommandError(f"the simulator runs only with BYBIT_ENV=simulator (now {settings.BYBIT_ENV!r})")
        # Never BYBIT_API_KEY/SECRET: those may be live keys; the simulator has its own paper credentials.
        api_key = opts["api_key"] or settings.SIMULATOR_API_KEY
        api_secret = opts["api_secret"] or settings.SIMULATOR_API_SECRET
        if not api_key or not api_secret:
            raise CommandError("an API key and secret are needed: --api-key/--api-secret or SIMULATOR_API_KEY/SECRET")
        faults = {name: opts[name] for name in FAULT_FLAGS}
        faults.update(timeout_seconds=opts["timeout_seconds"], drop_response_mode=opts["drop_response_mode"],
                      paths=opts["fault_paths"], seed=opts["seed"])
        try:
            FaultConfig().validated_changes(faults)
        except FaultConfigError as exc:
            raise CommandError(str(exc))
        extra = _instruments_argument(opts["instruments"])
        try:
            app = build_app(
                api_key=api_key, api_secret=api_secret, seed=opts["seed"], extra_instruments=extra,
                ws_gateway_key=opts["ws_gateway_key"] or settings.WS_GATEWAY_API_KEY or None,
                rate_limit_scale=opts["rate_limit_scale"], tick_interval=opts["tick_interval"], faults=faults,
                initial_balance=opts["initial_balance"], slippage=opts["slippage"], taker_fee=opts["taker_fee"],
                maker_fee=opts["maker_fee"],
            )
        except ValueError as exc:  # a bad instrument definition
            raise CommandError(f"--instruments: {exc}")
        listed = ", ".join(sorted(app.state.sim.engine.linear))
        self.stdout.write(f"Bybit simulator on http://{opts['host']}:{opts['port']} (seed {opts['seed']}); "
                          f"linear: {listed}")
        uvicorn.run(app, host=opts["host"], port=opts["port"], log_level="info")


def _instruments_argument(value: str | None) -> list | None:
    if not value:
        return None
    text = value.strip()
    if not text.startswith(("[", "{")):
        try:
            text = Path(value).read_text()
        except OSError as exc:
            raise CommandError(f"--instruments: cannot read {value}: {exc.strerror}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"--instruments: not valid JSON: {exc}")
    if isinstance(data, dict):  # Bybit's instruments-info result, or one definition
        data = data["list"] if "list" in data else [data]
    if not isinstance(data, list):
        raise CommandError("--instruments: expected a JSON list of instrument definitions")
    return data
