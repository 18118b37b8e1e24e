"""lab_common.origin in-process: how a Host is read, ALLOWED_HOSTS, and refusals before any work.

The same refusals against real gunicorn processes and in a browser are in tests/web
(test_foreign_hosts.py, test_cross_site_browser.py).
"""

from __future__ import annotations

import io

import pytest
from helpers.pki import server_config

from client_svc.config import ClientSettings
from lab_common.contract import HANDSHAKE, HEALTH, HELLO, OPENAPI
from lab_common.origin import DEFAULT_ALLOWED_HOSTS, allowed_hosts, normalize_host
from server_svc import create_app as create_server_app
from server_svc.config import ServerSettings


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("localhost", "localhost"),
        ("LocalHost.:8001", "localhost"),
        ("localhost:", "localhost"),  # RFC 3986: port = *DIGIT
        ("127.0.0.1:65535", "127.0.0.1"),
        ("[::1]", "[::1]"),
        ("[0:0:0:0:0:0:0:1]:8002", "[::1]"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("client-mitm", "client-mitm"),
        ("rebind.example", "rebind.example"),  # well-formed, not allowed: that is a 421
        ("", None),
        ("::1", None),  # an IPv6 address needs its brackets in a Host
        ("[::1", None),
        ("[::1]:x", None),
        ("[fe80::1%eth0]", None),
        ("[127.0.0.1]", None),
        ("localhost:80:90", None),
        ("localhost:123456", None),
        ("a..b", None),
        (".", None),
        ("localhost,rebind.example", None),  # two Host headers, joined
        ("local host", None),
        ("lo\u0441alhost", None),  # a Cyrillic letter
        ("x" * 400, None),
    ],
)
def test_a_host_is_read_as_the_allow_list_compares_it(value, host):
    assert normalize_host(value) == host


def test_allowed_hosts_adds_names_to_the_defaults():
    hosts = allowed_hosts(" lab.example:8443 ,, 2001:db8::1, [2001:db8::2], LAB2.example. ")
    assert hosts == {normalize_host(name) for name in DEFAULT_ALLOWED_HOSTS} | {
        "lab.example",
        "[2001:db8::1]",
        "[2001:db8::2]",
        "lab2.example",
    }
    for compose_service in ("server", "client", "mitm", "client-mitm", "proxy"):
        assert compose_service in hosts


@pytest.mark.parametrize("bad", ["lab example", "http://lab.example", "*", "[::1"])
def test_a_bad_allowed_hosts_entry_stops_the_service_at_start(bad):
    with pytest.raises(ValueError, match="ALLOWED_HOSTS"):
        create_server_app({"SERVER_CONFIG": server_config(), "ALLOWED_HOSTS": bad})


@pytest.mark.parametrize("kind", [ClientSettings, ServerSettings])
def test_both_services_read_allowed_hosts_from_the_environment(kind):
    assert kind().allowed_hosts == ""
    assert kind.load({"ALLOWED_HOSTS": "lab.example"}).allowed_hosts == "lab.example"


class ExplodingInput(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise AssertionError("the body of a refused request was read")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Host": "rebind.example"}, 421, "misdirected_request"),
        ({"Host": "a..b"}, 400, "invalid_host"),
        ({"Host": "localhost", "Origin": "null"}, 403, "cross_site_request"),
        ({"Host": "localhost", "Sec-Fetch-Site": "cross-site"}, 403, "cross_site_request"),
    ],
    ids=["foreign-host", "malformed-host", "null-origin", "cross-site"],
)
@pytest.mark.parametrize("side", ["server", "client"])
def test_a_refusal_comes_before_the_body_hooks_and_view(
    server_app, client_app, server, side, headers, status, code
):
    app = server_app if side == "server" else client_app
    hooks_run: list[str] = []
    app.before_request(lambda: hooks_run.append("before_request"))
    path = HELLO if side == "server" else HANDSHAKE
    response = app.test_client().post(
        path,
        headers=headers,
        content_type="application/json",
        environ_overrides={"wsgi.input": ExplodingInput(), "CONTENT_LENGTH": "100"},
    )
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == code
    assert hooks_run == []
    assert server.get(HEALTH).get_json()["connections"] == 0


def test_the_openapi_documents_list_the_refusals(server, client):
    """Every operation may be refused for its Host; every POST also for its site."""
    for side in (server, client):
        for path, operations in side.get(OPENAPI).get_json()["paths"].items():
            for method, operation in operations.items():
                answers = operation["responses"]
                assert "421" in answers and "400" in answers, (path, method)
                if method == "post":
                    assert "403" in answers, (path, method)
