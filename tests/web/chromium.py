"""Headless Chromium for the browser tests: Debian's browser and driver, never Selenium Manager's.

Chromium and its driver are Debian's (``apt-get install chromium chromium-driver``); Selenium is
pointed at /usr/bin/chromedriver and must never fetch a browser or a driver of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.selenium_manager import SeleniumManager
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path(os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("LAB_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The lab is on the loopback; a proxy from the environment must not be asked.
    "--no-proxy-server",
    "--window-size=1400,1000",
)
WAIT_S = 20


@contextmanager
def chromium(profile: Path, *extra_flags: str) -> Iterator[WebDriver]:
    """A headless Chromium with its own profile directory, quit on exit. ``extra_flags`` are
    added to CHROMIUM_FLAGS. A missing browser fails the test with how to install it, or skips
    it on a laptop without Docker (LAB_SKIP_COMPOSE=1), which CI never sets."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing and os.environ.get("LAB_SKIP_COMPOSE") == "1":
        pytest.skip(
            f"{', '.join(missing)} not found and LAB_SKIP_COMPOSE=1: the browser tests are "
            "skipped (apt-get install chromium chromium-driver runs them)"
        )
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install Debian's browser with "
            "`apt-get install -y chromium chromium-driver` (scripts/test does it in CI), "
            "or deselect these tests with -m 'not browser'",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(profile.parent / "chromedriver.log")
    )

    def no_selenium_manager(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("Selenium Manager was asked for a driver although its path is given")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", no_selenium_manager)
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_script_timeout(WAIT_S)
            yield driver
        finally:
            driver.quit()
