"""Run the simulator app under uvicorn in a background thread (tests, scripts, the dev server)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable

import uvicorn

from exchange.simulator.app import SimulatorState, build_app
from exchange.simulator.engine import SimEngine
from exchange.simulator.instruments import LinearSpec


class SimulatorServer:
    """``with SimulatorServer() as sim: ...`` — ``sim.url`` is the base URL, ``sim.engine`` the engine."""

    def __init__(
        self,
        api_key: str = "sim-key",
        api_secret: str = "sim-secret",
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_instruments: Iterable[dict | LinearSpec] | None = None,
        **options,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.host = host
        self.port = port
        self.app = build_app(api_key=api_key, api_secret=api_secret, seed=seed,
                             extra_instruments=extra_instruments, **options)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def state(self) -> SimulatorState:
        return self.app.state.sim

    @property
    def engine(self) -> SimEngine:
        return self.state.engine

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Back to the start: built-in and ``extra_instruments`` listed, run-time additions dropped."""
        self.state.reset()

    def add_instruments(self, definitions: Iterable[dict | LinearSpec]) -> list[LinearSpec]:
        """List more linear instruments until the next reset (same as ``POST /sim/instruments``)."""
        return self.engine.add_instruments(definitions)

    def start(self, *, timeout: float = 10.0) -> SimulatorServer:
        # Bind here (port 0 → a free port) so .url is known before uvicorn starts serving.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on", ws="none",
                                timeout_graceful_shutdown=1, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="bybit-simulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Bybit simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
