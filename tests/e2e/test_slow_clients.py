"""Slow and silent clients cannot take a service of the compose stack down (docs/security.md).

gunicorn's threaded worker spends a thread on every connection whose request it is reading, so
without help eight slow clients hold all eight threads of a service. The stack puts HAProxy in
front of both services (haproxy/haproxy.cfg): it reads each request whole, head and body, within
`timeout http-request` (10 s), and closes the connection of whoever is too slow (there is no
complete request to answer; HAProxy 2.6 would answer with an HTML page otherwise).
These tests attack both published services at once with 256 slow connections each and check
that everyone else is served meanwhile, and that the slow ones are cut at the documented time.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from helpers.slowclients import KINDS, Report, attack

from lab_common.contract import HANDSHAKE, HEALTH, MESSAGE

from .stack import LabStack, open_url

SLOW_CONNECTIONS = 256
#: haproxy/haproxy.cfg `timeout http-request`, the README's "request timeout".
REQUEST_TIMEOUT_S = 10.0
#: Long enough to see every slow connection cut, bounded.
ATTACK_S = REQUEST_TIMEOUT_S + 4.0


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _assert_held_out(report: Report, service: str) -> None:
    summary = report.summary()
    assert report.opened == SLOW_CONNECTIONS, summary
    # Everyone else was served, quickly, while the slow connections were open.
    assert not report.probe_failures, summary
    assert len(report.probes) >= 20, summary
    assert report.p99() <= 1.0, summary
    # And every slow connection was cut at the request timeout, never with an HTML page.
    for kind in KINDS:
        cut = report.cut(kind)
        assert len(cut) == len([c for c in report.slow if c.kind == kind]), (service, summary)
        for conn in cut:
            assert conn.cut_after is not None
            assert REQUEST_TIMEOUT_S - 0.5 <= conn.cut_after <= REQUEST_TIMEOUT_S + 3, summary
            assert conn.answer == b"", (kind, conn.answer[:200])


def test_slow_and_silent_clients_do_not_delay_anyone_else(lab_stack: LabStack) -> None:
    reports: dict[str, Report] = {}

    def run(service: str, url: str) -> None:
        reports[service] = attack(
            "127.0.0.1", _port(url), connections=SLOW_CONNECTIONS, duration_s=ATTACK_S
        )

    threads = [
        threading.Thread(target=run, args=(name, url))
        for name, url in (("client", lab_stack.client_url), ("server", lab_stack.server_url))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=ATTACK_S + 30)
    assert set(reports) == {"client", "server"}
    for service, report in reports.items():
        _assert_held_out(report, service)
    # Handshakes through both services still work once the attack is over.
    request = _post(lab_stack.client_url, HANDSHAKE, {})
    with open_url(request) as response:
        assert response.status == 200


def _post(base_url: str, path: str, body: dict[str, Any]) -> Any:
    import urllib.request

    return urllib.request.Request(
        f"{base_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )


def test_a_client_that_is_slow_but_finishes_in_time_is_served(lab_stack: LabStack) -> None:
    """The timeout bounds the whole request, not its pace: 3 s to send a handshake is fine."""
    body = b"{}"
    head = (
        f"POST {HANDSHAKE} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", _port(lab_stack.client_url)), timeout=20) as sock:
        for piece in (head[:20], head[20:], body[:1], body[1:]):
            sock.sendall(piece)
            time.sleep(1.0)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["connection_id"]


def test_a_large_message_passes_the_proxy_whole(lab_stack: LabStack) -> None:
    """The proxy buffers whole requests; a 2 MiB message (2.8 MB of JSON) still goes through."""
    with open_url(_post(lab_stack.client_url, HANDSHAKE, {})) as response:
        connection_id = json.loads(response.read())["connection_id"]
    plaintext = "x" * (2 * 1024 * 1024)
    request = _post(
        lab_stack.client_url,
        MESSAGE,
        {"plaintext": plaintext, "connection_id": connection_id},
    )
    with open_url(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert answer["reply"]["plaintext"].endswith(plaintext)
    assert answer["sent"]["records"] == 128


def _raw(base_url: str, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", _port(base_url)), timeout=15) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_what_is_not_http_is_closed_without_an_html_page(lab_stack: LabStack) -> None:
    """HAProxy refuses a head that is not HTTP before any service sees it; it closes the
    connection (its own answer would be an HTML page)."""
    for request in (
        b"GARBAGE\r\n\r\n",
        f"GET {HEALTH} HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n".encode(),
    ):
        assert _raw(lab_stack.server_url, request) == b"", request


def test_limits_gunicorn_answers_in_json_still_reach_gunicorn(lab_stack: LabStack) -> None:
    """The proxy's own limits are wider than gunicorn's, so these keep the services' JSON."""
    many_headers = b"".join(b"X-%d: 1\r\n" % i for i in range(150))
    for request, status, code in (
        (
            f"GET {HEALTH} HTTP/1.1\r\nHost: localhost\r\n".encode() + many_headers + b"\r\n",
            431,
            "headers_too_large",
        ),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414, "uri_too_long"),
    ):
        answer = _raw(lab_stack.client_url, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d" % status), answer[:200]
        assert json.loads(body)["error"]["code"] == code
