"""The live page in headless Chromium, against real client_svc and server_svc processes.

Chromium and its driver are Debian's (tests/web/chromium.py). ``LAB_SAVE_SCREENSHOT=1`` also
writes docs/screenshot.png (kept out of CI runs so they do not dirty the tree).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.served import REPO_ROOT, LiveLab
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from lab_common.contract import DEMO_TAMPER

from .chromium import WAIT_S, chromium

pytestmark = pytest.mark.browser

# The match column's mark for a value one side does not show (an en dash, not ✓ or ✗).
NOT_COMPARED = "\u2013"
SCREENSHOT = REPO_ROOT / "docs" / "screenshot.png"
FULL_RSA_LADDER = [
    "ClientHello",
    "ServerHello + Certificate + ServerHelloDone",
    "ClientKeyExchange + Finished",
    "Finished",
]


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


# -- helpers --------------------------------------------------------------------------------------


def wait(browser: WebDriver, condition, message: str):
    return WebDriverWait(browser, WAIT_S).until(lambda _: condition(), message)


def open_page(browser: WebDriver, lab: LiveLab) -> None:
    browser.get(f"{lab.client_url}/")
    wait(
        browser,
        lambda: browser.find_element(By.TAG_NAME, "html").get_attribute("data-ready") == "true",
        "the page script did not start",
    )


def status(browser: WebDriver) -> WebElement:
    return browser.find_element(By.ID, "status")


def run(browser: WebDriver, button_id: str, expect: str) -> None:
    """Click a handshake button and wait until its answer is drawn."""
    before = browser.find_element(By.ID, "run-summary").text
    browser.find_element(By.ID, button_id).click()
    wait(
        browser,
        lambda: "done" in status(browser).text or "failed" in status(browser).text,
        f"{button_id}: no answer",
    )
    assert "failed" not in status(browser).text, status(browser).text
    summary = browser.find_element(By.ID, "run-summary").text
    assert summary != before and expect in summary, summary


def arrow_labels(browser: WebDriver) -> list[str]:
    return [
        arrow.get_attribute("data-label")
        for arrow in browser.find_elements(By.CSS_SELECTOR, "#diagram g.arrow")
    ]


def marks(browser: WebDriver) -> dict[str, str]:
    return {
        row.get_attribute("data-row"): row.find_element(By.CSS_SELECTOR, "td.mark").text
        for row in browser.find_elements(By.CSS_SELECTOR, "#match-body tr")
    }


def top(element: WebElement) -> float:
    return float(element.rect["y"])


def assert_clean_console(browser: WebDriver) -> None:
    """No script error and no CSP violation (a refused inline script or style logs one)."""
    problems = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "/demo/" not in entry["message"]
    ]
    assert problems == []


def save_screenshot(browser: WebDriver, path: Path, until_id: str) -> None:
    """The page from its top to the end of element ``until_id``, beyond the window's height."""
    bottom = browser.execute_script(
        "const box = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return Math.ceil(box.bottom + window.scrollY + 16);",
        until_id,
    )
    width = browser.execute_script("return document.documentElement.scrollWidth")
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": bottom, "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


# -- tests ----------------------------------------------------------------------------------------


def test_rsa_handshake_draws_the_ladder_from_what_crossed_the_wire(browser, lab):
    open_page(browser, lab)
    run(browser, "run-rsa", "TLS_RSA_WITH_AES_256_CBC_SHA256")
    assert arrow_labels(browser) == FULL_RSA_LADDER
    arrows = browser.find_elements(By.CSS_SELECTOR, "#diagram g.arrow")
    assert [a.get_attribute("data-from") for a in arrows] == ["client", "server"] * 2

    # Each side's derivations sit on its own lifeline, between the arrows, in flight order.
    client_expansion = browser.find_element(
        By.CSS_SELECTOR, '#diagram g.step.client[data-action="key expansion"]'
    )
    server_expansion = browser.find_element(
        By.CSS_SELECTOR, '#diagram g.step.server[data-action="key expansion"]'
    )
    assert top(arrows[1]) < top(client_expansion) < top(arrows[2])
    assert top(arrows[2]) < top(server_expansion) < top(arrows[3])
    assert client_expansion.rect["x"] < server_expansion.rect["x"]

    # RSA: the server shows no fingerprint of the decrypted pre-master secret (it would be a
    # padding oracle); everything derived from it matches.
    found = marks(browser)
    assert found.pop("pre-master secret") == NOT_COMPARED
    assert set(found.values()) == {"✓"} and len(found) == 8

    # Click an arrow: the JSON that crossed the wire opens under it.
    arrows[0].click()
    detail = wait(
        browser,
        lambda: browser.find_elements(By.CSS_SELECTOR, '#diagram .wire-detail[data-for="wire-0"]'),
        "the ClientHello did not open",
    )[0]
    sent = json.loads(detail.find_element(By.CSS_SELECTOR, "pre").text)
    assert re.fullmatch(r"[0-9a-f]{64}", sent["client_random"])
    assert sent["cipher_suites"] == ["TLS_RSA_WITH_AES_256_CBC_SHA256"]
    opened = browser.find_element(By.CSS_SELECTOR, '#diagram g.arrow[data-id="wire-0"]')
    assert opened.get_attribute("aria-expanded") == "true"

    # The keyboard opens arrows too: they are focusable buttons.
    browser.find_element(By.CSS_SELECTOR, '#diagram g.arrow[data-id="wire-1"]').send_keys(
        Keys.ENTER
    )
    answer = wait(
        browser,
        lambda: browser.find_elements(By.CSS_SELECTOR, '#diagram .wire-detail[data-for="wire-1"]'),
        "Enter did not open the server's flight",
    )[0]
    assert "certificate_chain" in json.loads(answer.find_element(By.CSS_SELECTOR, "pre").text)
    assert_clean_console(browser)


def test_dhe_handshake_shows_the_signed_key_exchange_and_the_dh_steps(browser, lab):
    open_page(browser, lab)
    run(browser, "run-dhe", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256")
    assert arrow_labels(browser) == [
        "ClientHello",
        "ServerHello + Certificate + ServerKeyExchange + ServerHelloDone",
        "ClientKeyExchange + Finished",
        "Finished",
    ]
    found = marks(browser)
    # The DH pre-master secret and every key match; an AEAD suite has no MAC keys.
    assert found.pop("client_write_mac_key") == found.pop("server_write_mac_key") == NOT_COMPARED
    assert set(found.values()) == {"✓"} and len(found) == 7
    assert "client's DH public value" in browser.find_element(By.TAG_NAME, "body").text
    assert_clean_console(browser)


def test_ecdhe_handshake_shows_the_signed_key_exchange(browser, lab):
    open_page(browser, lab)
    run(browser, "run-ecdhe", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    assert arrow_labels(browser) == [
        "ClientHello",
        "ServerHello + Certificate + ServerKeyExchange + ServerHelloDone",
        "ClientKeyExchange + Finished",
        "Finished",
    ]
    found = marks(browser)
    # An AEAD suite has no MAC keys; every other value, the ECDH pre-master secret included, matches.
    assert found.pop("client_write_mac_key") == found.pop("server_write_mac_key") == NOT_COMPARED
    assert set(found.values()) == {"✓"} and len(found) == 7
    assert browser.find_element(By.ID, "secret-banner").is_displayed() is False
    assert browser.find_elements(By.CSS_SELECTOR, "#match-body .secret") == []
    assert_clean_console(browser)


def test_message_goes_out_and_the_reply_comes_back_as_records(browser, lab):
    open_page(browser, lab)
    run(browser, "run-rsa", "full handshake")
    box = browser.find_element(By.ID, "plaintext")
    box.clear()
    box.send_keys("hello from the projector")
    browser.find_element(By.ID, "send").click()
    wait(browser, lambda: "Reply:" in status(browser).text, "no reply to the message")
    assert "hello from the projector" in status(browser).text
    log = browser.find_element(By.ID, "message-log").text
    assert "hello from the projector" in log and "(seq 1)" in log
    assert arrow_labels(browser) == [*FULL_RSA_LADDER, "application_data", "application_data"]
    if os.environ.get("LAB_SAVE_SCREENSHOT") == "1":
        browser.find_element(By.CSS_SELECTOR, '#diagram g.arrow[data-id="wire-0"]').click()
        wait(
            browser,
            lambda: browser.find_elements(By.CSS_SELECTOR, ".wire-detail"),
            "no detail for the screenshot",
        )
        browser.execute_script("window.scrollTo(0, 0)")
        save_screenshot(browser, SCREENSHOT, "derivations")
    assert_clean_console(browser)


def test_resumed_session_keeps_the_master_secret(browser, lab):
    open_page(browser, lab)
    run(browser, "run-rsa", "full handshake")
    first = browser.find_element(By.CSS_SELECTOR, '#match-body tr[data-row="master secret"] code')
    master = first.get_attribute("title")
    run(browser, "resume", "resumed")
    assert arrow_labels(browser) == [
        "ClientHello",
        "ServerHello + Finished",
        "Finished",
        "HTTP reply (no TLS message)",
    ]
    again = browser.find_element(By.CSS_SELECTOR, '#match-body tr[data-row="master secret"] code')
    assert again.get_attribute("title") == master
    found = marks(browser)
    assert found.pop("pre-master secret") == NOT_COMPARED  # resumed: no new pre-master secret
    assert set(found.values()) == {"✓"}
    assert_clean_console(browser)


def test_prf_calculator_shows_the_rounds(browser, lab):
    open_page(browser, lab)
    vector = {
        "prf-secret": "9bbe436ba940f017b17652849a71db35",
        "prf-label": "test label",
        "prf-seed": "a0ba9f936cda311827a6f796ffd5198c",
        "prf-length": "100",
    }
    for field, value in vector.items():
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    browser.find_element(By.ID, "prf-run").click()
    output = wait(browser, lambda: browser.find_elements(By.ID, "prf-output"), "no PRF output")[0]
    assert output.text.startswith(
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
    )
    assert len(output.text) == 200
    rounds = browser.find_elements(By.CSS_SELECTOR, "#prf-result li.round")
    assert len(rounds) == 4  # 100 bytes of SHA-256 blocks
    assert "only the first 4 bytes are used" in rounds[-1].text
    assert_clean_console(browser)


def test_revealed_secrets_are_marked_and_the_presets_reproduce_them(browser, revealing_lab):
    open_page(browser, revealing_lab)
    ems = browser.find_element(By.ID, "ems")
    if ems.is_selected():
        ems.click()  # the classic master secret, so that the "master secret" preset applies
    run(browser, "run-rsa", "extended master secret off")
    banner = browser.find_element(By.ID, "secret-banner")
    assert banner.is_displayed()
    assert banner.text == "secret — shown because REVEAL_SECRETS=1"
    secrets = browser.find_elements(By.CSS_SELECTOR, "#match-body .secret")
    assert secrets and all("REVEAL_SECRETS=1" in s.text for s in secrets)

    browser.find_element(By.ID, "preset-master").click()
    assert browser.find_element(By.ID, "prf-label").get_attribute("value") == "master secret"
    assert len(browser.find_element(By.ID, "prf-secret").get_attribute("value")) == 96
    browser.find_element(By.ID, "prf-run").click()
    match = wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".prf-match"), "no match")
    assert "master secret of the last handshake" in match[0].text

    browser.find_element(By.ID, "preset-expansion").click()
    assert "server first" in browser.find_element(By.ID, "preset-note").text
    browser.find_element(By.ID, "prf-run").click()
    match = wait(
        browser,
        lambda: [
            m for m in browser.find_elements(By.CSS_SELECTOR, ".prf-match") if "key block" in m.text
        ],
        "the key expansion preset did not give the key block",
    )
    assert "key block of the last handshake" in match[0].text
    assert_clean_console(browser)


def test_demo_answers_are_shown_readably(browser, lab):
    open_page(browser, lab)
    browser.find_element(By.CSS_SELECTOR, 'button.demo[data-value="flip_record"]').click()
    card = wait(
        browser,
        lambda: browser.find_elements(
            By.CSS_SELECTOR, f'#demo-output article[data-path="{DEMO_TAMPER}"]'
        ),
        "no card for the tamper demo",
    )[0]
    assert card.find_element(By.TAG_NAME, "h3").text
    assert f'POST {DEMO_TAMPER} {{"attack":"flip_record"}}' in card.text
    card.find_element(By.CSS_SELECTOR, "details.raw summary").click()
    raw = json.loads(card.find_element(By.CSS_SELECTOR, "details.raw pre").text)
    if "error" in raw:  # an error is shown as it came, code and message
        assert raw["error"]["code"] in card.text
    else:
        assert raw.get("title", "") in card.text
    assert_clean_console(browser)


def test_large_type_enlarges_the_page_and_the_diagram(browser, lab):
    open_page(browser, lab)
    run(browser, "run-rsa", "full handshake")
    label = browser.find_element(By.CSS_SELECTOR, "#diagram .arrow-label")
    normal = float(label.get_attribute("font-size"))
    toggle = browser.find_element(By.ID, "large-type")
    toggle.click()
    try:
        assert toggle.get_attribute("aria-pressed") == "true"
        assert "large" in browser.find_element(By.TAG_NAME, "html").get_attribute("class")
        label = browser.find_element(By.CSS_SELECTOR, "#diagram .arrow-label")
        assert float(label.get_attribute("font-size")) > normal
    finally:
        toggle.click()  # the choice is remembered; leave the page as the other tests expect it
    assert toggle.get_attribute("aria-pressed") == "false"
    assert_clean_console(browser)
