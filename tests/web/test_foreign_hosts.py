"""Foreign Host headers (DNS rebinding) and cross-site requests, against real gunicorn processes.

A page whose host name an attacker re-points at 127.0.0.1 reaches the services with its own name
in Host; a page of any other site can POST a form or a no-cors fetch to them. Both services must
refuse such requests before any work (lab_common.origin): 421 ``misdirected_request`` for a Host
that is not one of the lab's names, 400 ``invalid_host`` for a missing or malformed one, 403
``cross_site_request`` for a state-changing request a browser marks as cross-site. What the lab's
own clients send (curl without headers, the page on its own origin, client_svc calling
server_svc) is still served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from helpers.rawhttp import address, call, connections, error_code, exchange, failures, scrape
from helpers.served import LiveLab, start_lab, stop_lab

from lab_common.contract import (
    DEMO_FORWARD_SECRECY,
    DEMO_PRIVATE_KEY,
    HANDSHAKE,
    HEALTH,
    HELLO,
    MESSAGE,
    METRICS,
    OPENAPI,
    PAGE,
    PRF_CALCULATOR,
    SESSION,
)

#: Added to the defaults by the lab under test, in the forms an operator might write them.
EXTRA_HOSTS = "lab.example, 2001:db8::1"
HELLO_BODY = {"client_random": "00" * 32, "cipher_suites": ["TLS_RSA_WITH_AES_128_CBC_SHA256"]}
PRF = {"secret": "00", "label": "test", "seed": "00", "length": 1}
# A name nobody else sends: it must not show up in any log line or metric.
MARKER_HOST = "leak-7f3a9c.rebind.example"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLab]:
    """Both services with REVEAL_SECRETS=1 (the issue's setting: secrets and the private key are
    served to allowed callers), extra ALLOWED_HOSTS, and the info log lines."""
    running = start_lab(
        tmp_path_factory.mktemp("hosts"),
        reveal_secrets=True,
        settings={"ALLOWED_HOSTS": EXTRA_HOSTS, "LOG_LEVEL": "info"},
    )
    yield running
    stop_lab(running)


@pytest.fixture(scope="module")
def connection_id(lab: LiveLab) -> str:
    """A connection an allowed caller made: its secrets are what a rebinding page is after."""
    status, _, body = call(lab.client_url, "POST", HANDSHAKE)
    assert status == 200, body
    return str(json.loads(body)["connection_id"])


# -- DNS rebinding: the Host -----------------------------------------------------------------------

ENDPOINTS = [
    ("client", "GET", HEALTH, None),
    ("client", "GET", METRICS, None),
    ("client", "GET", OPENAPI, None),
    ("client", "GET", PAGE, None),
    ("client", "GET", SESSION, None),
    ("client", "POST", HANDSHAKE, None),
    ("client", "POST", MESSAGE, {"plaintext": "hello"}),
    ("client", "POST", DEMO_FORWARD_SECRECY, None),
    ("client", "POST", PRF_CALCULATOR, PRF),
    ("server", "GET", HEALTH, None),
    ("server", "GET", METRICS, None),
    ("server", "GET", DEMO_PRIVATE_KEY, None),
    ("server", "GET", SESSION, None),
    ("server", "POST", HELLO, HELLO_BODY),
]


@pytest.mark.parametrize(
    ("service", "method", "path", "body"),
    ENDPOINTS,
    ids=[f"{service}-{method}-{path}" for service, method, path, _ in ENDPOINTS],
)
def test_a_foreign_host_is_refused_on_every_endpoint(
    lab, connection_id, service, method, path, body
):
    base_url = lab.client_url if service == "client" else lab.server_url
    before = connections(lab)
    answer = call(
        base_url,
        method,
        path.format(connection_id=connection_id),
        host=f"rebind.example:{address(base_url)[1]}",
        body=body,
    )
    assert answer[0] == 421, answer[2][:300]
    assert error_code(answer) == "misdirected_request"
    for secret_field in (b"private_key_pem", b"master_secret", b"key_block"):
        assert secret_field not in answer[2]
    assert connections(lab) == before  # no handshake ran, on either side


@pytest.mark.parametrize(
    "host",
    [
        "rebind.example",
        "localhost.rebind.example",
        "127.0.0.1.nip.io",
        "LOCALHOST-rebind.example:8001",
        "0.0.0.0",
        "[::2]",
        "[::ffff:127.0.0.1]",
    ],
)
def test_names_that_only_look_local_are_refused(lab, host):
    before = connections(lab)
    answer = call(lab.client_url, "POST", HANDSHAKE, host=host)
    assert answer[0] == 421 and error_code(answer) == "misdirected_request"
    assert connections(lab) == before


@pytest.mark.parametrize(
    "host",
    ["", "a..b", "localhost:http", "localhost:80:90", "[::1", "[::1]x", "lo_cal host", "évil"],
)
def test_a_malformed_host_gets_400(lab, host):
    before = connections(lab)
    answer = call(lab.client_url, "POST", HANDSHAKE, host=host)
    assert answer[0] == 400 and error_code(answer) == "invalid_host"
    assert connections(lab) == before


@pytest.mark.parametrize("service", ["client", "server"])
def test_http_1_1_without_a_host_or_with_two_gets_400(lab, service):
    base_url = lab.client_url if service == "client" else lab.server_url
    answer = exchange(address(base_url), f"GET {HEALTH} HTTP/1.1\r\n\r\n".encode())
    assert answer.status_code == 400, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert answer.get_json()["error"]["code"] == "invalid_host"
    # Two Hosts: gunicorn refuses them itself (RFC 9110 §5.3); lab_common.origin would too.
    answer = exchange(
        address(base_url),
        f"GET {HEALTH} HTTP/1.1\r\nHost: localhost\r\nHost: rebind.example\r\n\r\n".encode(),
    )
    assert answer.status_code == 400, answer.body
    assert answer.get_json()["error"]["code"] in {"bad_request", "invalid_host"}
    # HTTP/1.0 may leave Host out (no browser does): the connection names the server.
    answer = exchange(address(base_url), f"GET {HEALTH} HTTP/1.0\r\n\r\n".encode())
    assert answer.status_code == 200, answer.body


@pytest.mark.parametrize("service", ["client", "server"])
def test_a_foreign_host_is_refused_before_the_body_is_read(lab, service):
    """Only the head is sent; a service that read the body first would wait for it."""
    base_url = lab.client_url if service == "client" else lab.server_url
    path = HANDSHAKE if service == "client" else HELLO
    answer = exchange(
        address(base_url),
        f"POST {path} HTTP/1.1\r\nHost: rebind.example\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
    )
    assert answer.status_code == 421, answer.body
    assert answer.get_json()["error"]["code"] == "misdirected_request"


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:{port}",
        "LOCALHOST.",
        "127.0.0.1:{port}",
        "[::1]:{port}",
        "[0:0:0:0:0:0:0:1]",
        "server:8002",
        "client",
        "mitm",
        "client-mitm:8001",
        "proxy",
        "lab.example",  # ALLOWED_HOSTS
        "LAB.Example.:443",
        "[2001:db8::1]:8002",  # ALLOWED_HOSTS, written without brackets there
    ],
)
@pytest.mark.parametrize("service", ["client", "server"])
def test_the_lab_s_own_names_are_served(lab, service, host):
    """The other side of the allow-list: case, a trailing dot and any port do not matter."""
    base_url = lab.client_url if service == "client" else lab.server_url
    status, _, body = call(base_url, "GET", HEALTH, host=host.format(port=address(base_url)[1]))
    assert status == 200, body


def test_a_handshake_on_an_allowed_name_runs(lab):
    before_client, before_server = connections(lab)
    status, _, body = call(lab.client_url, "POST", HANDSHAKE, host="LocalHost.:8001")
    assert status == 200, body
    assert connections(lab) == (before_client + 1, before_server + 1)


def test_a_refused_host_is_counted_but_never_logged_or_labelled(lab):
    counted = {
        url: failures(url, "misdirected_request") for url in (lab.client_url, lab.server_url)
    }
    for base_url in (lab.client_url, lab.server_url):
        assert call(base_url, "GET", HEALTH, host=MARKER_HOST)[0] == 421
        assert call(base_url, "POST", HANDSHAKE, host=MARKER_HOST)[0] == 421
        answer = call(base_url, "POST", HANDSHAKE, headers={"Origin": f"http://{MARKER_HOST}"})
        assert answer[0] == 403
    for base_url, before in counted.items():
        assert failures(base_url, "misdirected_request") == before + 2
        assert MARKER_HOST not in scrape(base_url)
    lines = lab.log_lines()
    assert not [line for line in lines if MARKER_HOST in line]
    refusals = [json.loads(line) for line in lines if '"event":"refused"' in line]
    assert {(r["service"], r["code"]) for r in refusals} >= {
        ("client_svc", "misdirected_request"),
        ("server_svc", "misdirected_request"),
        ("client_svc", "cross_site_request"),
        ("server_svc", "cross_site_request"),
    }


# -- cross-site requests ---------------------------------------------------------------------------

CROSS_SITE = {
    "fetch-metadata": {"Sec-Fetch-Site": "cross-site"},
    "foreign-origin": {"Origin": "http://attacker.example"},
    "null-origin": {"Origin": "null"},
    "other-loopback-site": {"Origin": "http://127.0.0.2:8080", "Sec-Fetch-Site": "cross-site"},
    "look-alike-origin": {"Origin": "http://localhost.attacker.example:8001"},
    "foreign-origin-called-same-site": {
        "Origin": "https://evil.lab.example",
        "Sec-Fetch-Site": "same-site",
    },
    "localhost-page-to-127.0.0.1": {
        "Origin": "http://localhost:8001",
        "Sec-Fetch-Site": "cross-site",
    },
    "file-page": {"Origin": "file://"},
}
STATE_CHANGING = [
    ("client", HANDSHAKE, None),
    ("client", DEMO_FORWARD_SECRECY, None),
    ("client", MESSAGE, {"plaintext": "hello"}),
    ("server", HELLO, HELLO_BODY),
]


@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
@pytest.mark.parametrize(
    ("service", "path", "body"), STATE_CHANGING, ids=[p for _, p, _ in STATE_CHANGING]
)
def test_a_cross_site_post_is_refused(lab, service, path, body, headers):
    base_url = lab.client_url if service == "client" else lab.server_url
    before = connections(lab)
    answer = call(base_url, "POST", path, headers=headers, body=body)
    assert answer[0] == 403, answer[2][:300]
    assert error_code(answer) == "cross_site_request"
    assert connections(lab) == before


def test_a_cross_site_post_is_refused_before_the_body_is_read(lab):
    answer = exchange(
        lab.client.address,
        f"POST {HANDSHAKE} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: null\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode(),
    )
    assert answer.status_code == 403, answer.body
    assert answer.get_json()["error"]["code"] == "cross_site_request"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl -X POST, as the README does; also client_svc's own calls to server_svc
        {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},  # the live page
        # Another port of this machine is the same site: Origin's host is one of ours.
        {"Origin": "http://localhost:9999", "Sec-Fetch-Site": "same-site"},
        {"Origin": "https://lab.example"},  # an ALLOWED_HOSTS name, e.g. behind a TLS proxy
        {"Sec-Fetch-Site": "none"},
    ],
    ids=["no-browser-headers", "same-origin-page", "same-site-port", "allowed-name", "none"],
)
def test_the_lab_s_own_posts_still_run_a_handshake(lab, headers):
    port = str(address(lab.client_url)[1])
    headers = {name: value.format(port=port) for name, value in headers.items()}
    before_client, before_server = connections(lab)
    status, _, body = call(lab.client_url, "POST", HANDSHAKE, headers=headers)
    assert status == 200, body
    # client_svc's own calls to server_svc (no Origin, no Sec-Fetch-Site) went through.
    assert connections(lab) == (before_client + 1, before_server + 1)


def test_safe_methods_are_not_checked_for_their_site(lab):
    """A cross-site GET cannot read the answer (same-origin policy) and changes nothing."""
    for method in ("GET", "HEAD", "OPTIONS"):
        status, _, _ = call(
            lab.client_url,
            method,
            HEALTH,
            headers={"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert status == 200
