"""A hostile web page in headless Chromium against real client_svc and server_svc processes.

The attacker's site is served by the test from another origin, http://127.0.0.2:<port> (Linux
routes all of 127/8 to the loopback), so it is cross-site to the lab on 127.0.0.1 without any
DNS. Its pages do what any site the student visits could do: submit a plain HTML form and send
``fetch(..., {mode: "no-cors"})`` POSTs to client_svc, which need no CORS preflight. For DNS
rebinding, a Chromium started with ``--host-resolver-rules`` resolves an attacker's name to
127.0.0.1, as a rebinding DNS server would after its first answer. The lab's own page on its own
origin is tested in test_browser.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers.rawhttp import address, connections, failures
from helpers.served import LiveLab
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from lab_common.contract import DEMO_FORWARD_SECRECY, DEMO_PRIVATE_KEY, HANDSHAKE

from .chromium import WAIT_S, chromium

pytestmark = pytest.mark.browser

ATTACKER_ADDRESS = "127.0.0.2"
REBINDING_NAME = "rebind.test"
#: POSTs a page of any site can send without a preflight and without a body (the lab's
#: /handshake and body-less demos take an empty body as "all defaults").
TARGETS = (HANDSHAKE, DEMO_FORWARD_SECRECY)


class AttackerSite:
    """http://127.0.0.2:<port>/<name>.html serves ``pages[name]``; the test writes them."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = pages.get(self.path.removeprefix("/").removesuffix(".html"))
                body = (page or "not found").encode()
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((ATTACKER_ADDRESS, 0), Handler)
        self.url = f"http://{ATTACKER_ADDRESS}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page(self, name: str, html: str) -> str:
        self.pages[name] = f"<!doctype html><html><body>{html}</body></html>"
        return f"{self.url}/{name}.html"


@pytest.fixture(scope="module")
def lab(revealing_lab: LiveLab) -> LiveLab:
    """REVEAL_SECRETS=1, as in the issue: the forward-secrecy demo then runs to its end."""
    return revealing_lab


@pytest.fixture(scope="module")
def attacker() -> Iterator[AttackerSite]:
    site = AttackerSite()
    site.thread.start()
    try:
        yield site
    finally:
        site.server.shutdown()
        site.server.server_close()
        site.thread.join(timeout=WAIT_S)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-cross-site")) as driver:
        yield driver


@pytest.fixture(scope="module")
def rebinding_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Resolves rebind.test to 127.0.0.1: a rebinding DNS server's second answer."""
    with chromium(
        tmp_path_factory.mktemp("chromium-rebinding"),
        f"--host-resolver-rules=MAP {REBINDING_NAME} 127.0.0.1",
    ) as driver:
        yield driver


def shown_json(browser: WebDriver, url_prefix: str) -> dict[str, Any]:
    """The JSON document the browser shows once it has navigated to ``url_prefix``..."""
    WebDriverWait(browser, WAIT_S).until(
        lambda _: (
            browser.current_url.startswith(url_prefix)
            and browser.execute_script("return document.readyState") == "complete"
        ),
        f"the browser did not arrive at {url_prefix}",
    )
    text = browser.find_element(By.TAG_NAME, "body").text
    try:
        shown: dict[str, Any] = json.loads(text)
    except ValueError:
        pytest.fail(f"{browser.current_url} shows no JSON but: {text[:300]!r}")
    return shown


@pytest.mark.parametrize("path", TARGETS)
def test_a_form_on_another_site_cannot_post_to_client_svc(browser, lab, attacker, path):
    before, refused = connections(lab), failures(lab.client_url, "cross_site_request")
    form_page = attacker.page(
        f"form-{path.strip('/').replace('/', '-')}",
        f'<form method="post" action="{lab.client_url}{path}"></form>'
        "<script>document.forms[0].submit()</script>",
    )
    browser.get(form_page)
    # The form navigates the browser to client_svc's answer: the refusal, not a handshake.
    shown = shown_json(browser, f"{lab.client_url}{path}")
    assert shown.get("error", {}).get("code") == "cross_site_request", shown
    assert connections(lab) == before  # no handshake on either side
    assert failures(lab.client_url, "cross_site_request") == refused + 1


def test_a_no_cors_fetch_on_another_site_cannot_post_to_client_svc(browser, lab, attacker):
    before, refused = connections(lab), failures(lab.client_url, "cross_site_request")
    browser.get(attacker.page("fetch", "<p>a page of another site</p>"))
    outcomes = browser.execute_async_script(
        """
        const [urls, done] = [arguments[0], arguments[arguments.length - 1]];
        Promise.all(urls.map((url) =>
            fetch(url, {method: "POST", mode: "no-cors"}).then((r) => r.type, (e) => String(e))
        )).then(done);
        """,
        [f"{lab.client_url}{path}" for path in TARGETS],
    )
    # An opaque answer: the requests reached client_svc (the page cannot read what it said).
    assert outcomes == ["opaque"] * len(TARGETS)
    assert connections(lab) == before
    # client_svc counted each of them as refused: they were answered 403 cross_site_request.
    assert failures(lab.client_url, "cross_site_request") == refused + len(TARGETS)


def test_a_rebound_name_gets_421_instead_of_the_live_page(rebinding_browser, lab):
    port = address(lab.client_url)[1]
    page = f"http://{REBINDING_NAME}:{port}/"
    rebinding_browser.get(page)
    shown = shown_json(rebinding_browser, page)
    assert shown.get("error", {}).get("code") == "misdirected_request", shown
    assert rebinding_browser.find_elements(By.ID, "run-rsa") == []


def test_a_rebound_name_cannot_fetch_the_server_s_private_key(rebinding_browser, lab):
    """With REVEAL_SECRETS=1 server_svc hands out its key, but only to the lab's own names."""
    port = address(lab.server_url)[1]
    url = f"http://{REBINDING_NAME}:{port}{DEMO_PRIVATE_KEY}"
    rebinding_browser.get(url)
    shown = shown_json(rebinding_browser, url)
    assert "private_key_pem" not in shown
    assert shown.get("error", {}).get("code") == "misdirected_request", shown
