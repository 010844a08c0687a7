"""The pages a newcomer opens first, served by uvicorn started exactly as the Procfile starts it.

Django's test live server serves static files itself, so it cannot show a `make run` without
styles. Here the web process is the Procfile's own command line (module path and flags) in a
child process, on this test's committed PostgreSQL database, after `collectstatic`; every page
must load without a failed request (404 or other 4xx/5xx) and without a console error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tests.browser.conftest import CHROMIUM_FLAGS, wait_for
from tests.fixtures.personas import PASSWORD
from tests.fixtures.servers import require

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
PAGES = ["/admin/", "/admin/dashboard/", "/reports/pnl/", "/reports/orders/", "/api/docs/"]


def procfile_web_command() -> str:
    line = next(x for x in (ROOT / "Procfile.paper").read_text().splitlines() if x.startswith("web:"))
    return line.split(":", 1)[1].strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "REDIS_URL", "BYBIT_BASE_URL")}
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        BYBIT_ENV="simulator", LOG_LEVEL="warning", DEBUG="false", **extra,
    )  # fmt: skip
    return env


@pytest.fixture(scope="module")
def collected_static():
    done = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT,
                          env=child_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture
def procfile_web(collected_static, transactional_db, tmp_path):
    port = free_port()
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115 (closed below)
    # As honcho runs a Procfile line: through a shell, with the web port in the environment.
    process = subprocess.Popen(["bash", "-c", "exec " + procfile_web_command()], cwd=ROOT,
                               env=child_env(WEB_PORT=str(port)), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "web.log").read_text()
            try:
                if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn did not come up: " + (tmp_path / "web.log").read_text()
            time.sleep(0.05)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def logging_browser():
    """A Chromium whose console and network events can be read back (goog:loggingPrefs)."""
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    require(os.path.exists(driver_path) and shutil.which("chromium") is not None,
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")  # fmt: skip
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def drain(driver) -> tuple[list[str], list[str]]:
    """(failed responses, console errors) since the last call."""
    failed = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            response = message["params"]["response"]
            if response["status"] >= 400:
                failed.append(f"{response['status']} {response['url']}")
        elif message["method"] == "Network.loadingFailed" and not message["params"].get("canceled"):
            failed.append(f"failed {message['params'].get('errorText')} ({message['params'].get('type')})")
    errors = [f"{e['level']} {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return failed, errors


def test_make_run_pages_load_styled_without_a_404_or_console_error(procfile_web, logging_browser, risk_admin):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher
    from selenium.webdriver.common.by import By

    driver, base = logging_browser, procfile_web
    # The child runs the production settings, which do not know the test settings' MD5 hasher.
    risk_admin.password = PBKDF2PasswordHasher().encode(PASSWORD, "browsersalt", iterations=1000)
    risk_admin.save(update_fields=["password"])
    driver.get(f"{base}/admin/login/")
    wait_for(driver, lambda d: d.find_elements(By.NAME, "username"))
    driver.find_element(By.NAME, "username").send_keys(risk_admin.username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(driver, lambda d: "/admin/login/" not in d.current_url)
    assert drain(driver) == ([], [])

    for page in PAGES:
        driver.get(base + page)
        wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
        if page == "/api/docs/":  # Swagger UI renders the operations from the schema it fetches
            wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"), timeout=20)
        else:  # the admin's stylesheet applied: the header has its colour, not the browser's default
            header = driver.find_element(By.ID, "header")
            assert header.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent"), page
        failed, errors = drain(driver)
        assert failed == [], f"{page}: {failed}"
        assert errors == [], f"{page}: {errors}"


def test_static_files_are_hashed_compressed_and_cached(procfile_web):
    page = httpx.get(f"{procfile_web}/admin/login/").text
    href = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
    assert href, "the admin stylesheet is referenced by its hashed name"

    response = httpx.get(procfile_web + href.group(1), headers={"Accept-Encoding": "gzip"})

    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "max-age=315360000" in response.headers["cache-control"]
    assert httpx.get(f"{procfile_web}/static/admin/css/missing.css").status_code == 404


def test_the_procfile_uvicorn_takes_a_large_fill_batch_but_not_more_than_its_ws_max_size(procfile_web):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    assert "--ws-max-size 1048576" in procfile_web_command()
    url = procfile_web.replace("http://", "ws://") + "/ws/gateway/"
    headers = {"X-API-Key": "sim-gateway-key"}  # the paper setup's key
    with connect(url, additional_headers=headers, max_size=2**21, open_timeout=20) as ws:
        ws.send(json.dumps({"op": "ping", "req_id": "x" * 700_000}))  # about a thousand executions' worth
        assert json.loads(ws.recv(timeout=20))["op"] == "pong"
    with connect(url, additional_headers=headers, max_size=2**21, open_timeout=20) as ws:
        ws.send(json.dumps({"op": "ping", "req_id": "x" * 1_100_000}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
    assert closed.value.rcvd.code == 1009  # message too big
