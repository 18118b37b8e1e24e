"""GET /sessions/<id>/pcap on client_svc and the page's "Download for Wireshark" link.

The capture is judged by Debian's tshark (tests/helpers/tshark.py): with REVEAL_SECRETS=1 it
decrypts from the capture alone; without, the capture holds no secret and decrypts with
client_svc's SSLKEYLOGFILE.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.served import LiveLab
from helpers.tshark import dissect
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from kdf_lib import keylog, pki
from kdf_lib.wire import HandshakeType
from lab_common.contract import (
    CAPTURE_HEADER,
    HANDSHAKE,
    KEY_LOG_HEADER,
    MESSAGE,
    PCAP_MEDIA_TYPE,
    SESSION_PCAP,
    path,
)

from .chromium import WAIT_S, chromium

STATIC = Path(__file__).resolve().parents[2] / "client_svc" / "static"
ECDHE_FULL = [
    HandshakeType.client_hello,
    HandshakeType.server_hello,
    HandshakeType.certificate,
    HandshakeType.server_key_exchange,
    HandshakeType.server_hello_done,
    HandshakeType.client_key_exchange,
    HandshakeType.finished,
    HandshakeType.finished,
]


def download(client: FlaskClient, connection_id: str, folder: Path) -> tuple[Path, str]:
    answer = client.get(path(SESSION_PCAP, connection_id))
    assert answer.status_code == 200, answer.get_json()
    assert answer.mimetype == PCAP_MEDIA_TYPE
    assert answer.headers["Content-Disposition"] == (
        f'attachment; filename="tls-lab-{connection_id}.pcapng"'
    )
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers[CAPTURE_HEADER] == "complete"
    capture = folder / f"{connection_id}.pcapng"
    capture.write_bytes(answer.get_data())
    return capture, answer.headers[KEY_LOG_HEADER]


def send(client: FlaskClient, connection_id: str, *texts: str) -> bytes:
    """Send each text; the replies' plaintexts, joined."""
    replies = b""
    for text in texts:
        answer = client.post(MESSAGE, json={"plaintext": text, "connection_id": connection_id})
        assert answer.status_code == 200, answer.get_json()
        replies += answer.get_json()["reply"]["plaintext"].encode()
    return replies


def test_with_reveal_secrets_the_capture_decrypts_on_its_own(
    revealing_client: FlaskClient, tmp_path: Path
) -> None:
    shook = revealing_client.post(HANDSHAKE, json={"key_exchange": "ecdhe"}).get_json()
    replies = send(revealing_client, shook["connection_id"], "first", "ünïcödé")
    capture, key_log = download(revealing_client, shook["connection_id"], tmp_path)
    assert key_log == "embedded"
    assert bytes.fromhex(shook["secrets"]["master_secret"]).hex().encode() in capture.read_bytes()
    seen = dissect(capture)
    assert seen.problems == []
    assert seen.handshake_types == ECDHE_FULL  # both Finished messages decrypted
    assert seen.data_from("127.0.0.1") == "firstünïcödé".encode()
    assert seen.data_from("127.0.0.2") == replies


def test_without_reveal_secrets_the_capture_holds_no_secret_and_the_key_log_opens_it(
    make_client_app: Callable[..., Flask], tmp_path: Path
) -> None:
    keylog_file = tmp_path / "sslkeylog.txt"
    client = make_client_app(SSLKEYLOGFILE=str(keylog_file)).test_client()
    shook = client.post(HANDSHAKE, json={"key_exchange": "ecdhe"}).get_json()
    replies = send(client, shook["connection_id"], "only with the key log")
    capture, key_log = download(client, shook["connection_id"], tmp_path)
    assert key_log == "absent"
    master = keylog.find_master_secret(
        keylog_file.read_text(), bytes.fromhex(shook["client_random"])
    )
    assert master is not None
    data = capture.read_bytes()
    assert master not in data and master.hex().encode() not in data
    assert b"CLIENT_RANDOM" not in data

    seen = dissect(capture)
    assert seen.problems == []
    assert HandshakeType.finished not in seen.handshake_types  # still encrypted
    assert seen.data_from("127.0.0.1") == seen.data_from("127.0.0.2") == b""
    opened = dissect(capture, keylog_file=keylog_file)
    assert opened.handshake_types == ECDHE_FULL
    assert opened.data_from("127.0.0.1") == b"only with the key log"
    assert opened.data_from("127.0.0.2") == replies


def test_a_resumed_connection_is_exported_too(
    revealing_client: FlaskClient, tmp_path: Path
) -> None:
    first = revealing_client.post(HANDSHAKE, json={}).get_json()
    resumed = revealing_client.post(HANDSHAKE, json={"resume": first["session_id"]}).get_json()
    assert resumed["resumed"] is True
    capture, _ = download(revealing_client, resumed["connection_id"], tmp_path)
    seen = dissect(capture)
    assert seen.problems == []
    assert seen.handshake_types == [
        HandshakeType.client_hello,
        HandshakeType.server_hello,
        HandshakeType.finished,
        HandshakeType.finished,
    ]


def test_unknown_and_malformed_connections_are_refused_as_json(client: FlaskClient) -> None:
    unknown = client.get(path(SESSION_PCAP, "ab" * 16))
    assert unknown.status_code == 404
    assert unknown.get_json()["error"]["code"] == "unknown_connection"
    malformed = client.get(path(SESSION_PCAP, "not-an-id"))
    assert malformed.status_code == 400
    assert malformed.get_json()["error"]["code"] == "malformed_connection_id"


def test_a_failed_handshake_has_no_connection_to_export(
    make_client_app: Callable[..., Flask],
) -> None:
    stranger = pki.create_ca("A CA client_svc does not know", now=datetime.now(UTC))
    client = make_client_app(TRUST_ANCHORS=(stranger.certificate,)).test_client()
    refused = client.post(HANDSHAKE, json={}).get_json()["error"]
    assert refused["code"] == "unknown_ca"
    answer = client.get(path(SESSION_PCAP, refused["connection_id"]))
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["code"] == "handshake_incomplete"
    assert "unknown_ca" in error["message"]


def test_the_page_offers_the_download_for_wireshark(client: FlaskClient) -> None:
    script = (STATIC / "lab.js").read_text(encoding="utf-8")
    page = client.get("/").get_data(as_text=True)
    assert 'id="pcap"' in page and "Download for Wireshark" in page
    assert "/pcap" in script


@pytest.mark.browser
def test_the_download_link_appears_after_a_handshake_and_fetches_its_capture(
    revealing_lab: LiveLab, tmp_path: Path
) -> None:
    with chromium(tmp_path / "chromium-profile") as browser:
        browser.get(f"{revealing_lab.client_url}/")
        ready = WebDriverWait(browser, WAIT_S)
        ready.until(lambda b: b.find_element(By.TAG_NAME, "html").get_attribute("data-ready"))
        link = browser.find_element(By.ID, "pcap")
        assert not link.is_displayed()
        browser.find_element(By.ID, "run-ecdhe").click()
        ready.until(lambda b: b.find_element(By.ID, "pcap").is_displayed())
        href = link.get_attribute("href")
        assert link.text == "Download for Wireshark"
    assert href is not None
    assert re.fullmatch(
        rf"{re.escape(revealing_lab.client_url)}/sessions/[0-9a-f]{{32}}/pcap", href
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(href, timeout=WAIT_S) as answer:
        assert answer.headers["Content-Type"] == PCAP_MEDIA_TYPE
        assert answer.headers[KEY_LOG_HEADER] == "embedded"
        capture = tmp_path / "downloaded.pcapng"
        capture.write_bytes(answer.read())
    seen = dissect(capture)
    assert seen.problems == []
    assert seen.handshake_types == ECDHE_FULL
