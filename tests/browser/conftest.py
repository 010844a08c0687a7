"""A real headless Chromium (Debian's chromium + chromium-driver; no browser download)."""

import os
import shutil

import pytest

from tests.fixtures.servers import require

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
)  # fmt: skip


@pytest.fixture(scope="session")
def browser():
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    require(os.path.exists(driver_path) and shutil.which("chromium") is not None,
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")  # fmt: skip
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def login(browser, live_server):
    from selenium.webdriver.common.by import By

    from tests.fixtures.personas import PASSWORD

    def do(user, server=None):
        base = (server or live_server).url
        browser.delete_all_cookies()
        browser.get(f"{base}/admin/login/")
        browser.find_element(By.NAME, "username").send_keys(user.username)
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait_for(browser, lambda d: "/admin/login/" not in d.current_url)
        return base

    return do


def wait_for(driver, condition, timeout: float = 10.0):
    """Poll a condition with a deadline (never a fixed sleep). An element replaced between finding it and
    reading it (a live fragment swapped in by the page) is polled again, not a failure."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)
