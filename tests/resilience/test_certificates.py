"""client_svc refuses a bad server certificate before it sends any secret (RFC 5246 §7.4.2).

Each case runs a real server_svc (in-process) whose ServerConfig carries the bad certificate and
drives client_svc through its HTTP API. The handshake must stop after the hello: server_svc never
receives /handshake/finish (which would carry the encrypted pre-master secret or the client's
ECDH key), the error names the alert and says why, and nothing can be sent on the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.pki import NOW, build_certificate, rsa_key
from helpers.transport import FlaskTransport

from kdf_lib import pki
from lab_common.contract import ALERT, FINISH, HANDSHAKE, HEALTH, HELLO, MESSAGE, SESSION, path


def self_signed_leaf(name: str) -> pki.Issued:
    """A server certificate signed by its own key: a proper leaf (CA:FALSE), trusted by nobody."""
    key = rsa_key()
    return pki.Issued(certificate=build_certificate(key, None, name=name), private_key=key)


@pytest.fixture(scope="module")
def other_ca() -> pki.Issued:
    return pki.create_ca("Some Other CA", now=NOW)


# name -> (how to make the certificate, expected code, words the message must contain)
BAD_CERTIFICATES: dict[str, tuple[Callable[[pki.Issued, pki.Issued], pki.Issued], str, str]] = {
    "self_signed_leaf": (
        lambda ca, other: self_signed_leaf("server"),
        "unknown_ca",
        "self-signed",
    ),
    "unknown_ca": (
        lambda ca, other: pki.issue_server_certificate(other, "server", now=NOW),
        "unknown_ca",
        "not issued by a trusted certificate authority",
    ),
    "wrong_host_name": (
        lambda ca, other: pki.issue_server_certificate(ca, "bank.example", now=NOW),
        "bad_certificate",
        "not valid for host 'server'",
    ),
    "expired": (
        lambda ca, other: pki.issue_server_certificate(
            ca,
            "server",
            now=NOW,
            not_before=NOW - timedelta(days=30),
            not_after=NOW - timedelta(days=1),
        ),
        "certificate_expired",
        "certificate expired at",
    ),
    "not_yet_valid": (
        lambda ca, other: pki.issue_server_certificate(
            ca,
            "server",
            now=NOW,
            not_before=NOW + timedelta(days=1),
            not_after=NOW + timedelta(days=30),
        ),
        "certificate_expired",
        "not valid before",
    ),
    "ca_true_leaf": (
        lambda ca, other: pki.issue_server_certificate(ca, "server", now=NOW, ca_flag=True),
        "unsupported_certificate",
        "CA certificate (basicConstraints CA:TRUE)",
    ),
}


def assert_stopped_before_any_secret(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask, answer: dict, code: str
) -> None:
    """The common consequences of an aborted handshake, for client and server alike."""
    error = answer["error"]
    connection_id = error["connection_id"]
    # Only the hello crossed, then the client's fatal alert (RFC 5246 §7.2.2), which names the
    # alert and nothing else: no ClientKeyExchange, no Finished, no application data.
    assert transport.paths() == [HELLO, ALERT]
    assert transport.received[-1].body == {"connection_id": connection_id, "alert": code}
    # The server dropped the half-open connection at once, knowing why.
    server_view = server_app.test_client().get(path(SESSION, connection_id)).get_json()
    assert server_view["state"] == "failed" and server_view["error"] == code
    assert server_view["trace"][-1]["action"] == f"receive alert {code}"
    # client_svc keeps the failed handshake for inspection, but not as a usable connection.
    view = client.get(path(SESSION, connection_id)).get_json()
    assert view["state"] == "failed" and view["error"] == code
    assert view["failure"]["code"] == code
    actions = [step["action"] for step in view["trace"]]
    assert actions[-1] == "abort"
    assert not any("pre-master" in a or "ECDH public key" in a for a in actions)
    assert client.get(HEALTH).get_json()["connections"] == 0
    # Nothing can be sent on it, by id or as "the latest connection".
    refused = client.post(MESSAGE, json={"plaintext": "x", "connection_id": connection_id})
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "unexpected_message"
    assert code in refused.get_json()["error"]["message"]
    latest = client.post(MESSAGE, json={"plaintext": "x"})
    assert latest.status_code == 409 and latest.get_json()["error"]["code"] == "no_connection"
    assert transport.paths() == [HELLO, ALERT]


@pytest.mark.parametrize("key_exchange", ["rsa", "ecdhe"])
@pytest.mark.parametrize("case", sorted(BAD_CERTIFICATES))
def test_a_bad_server_certificate_stops_the_handshake_before_any_secret(
    case: str,
    key_exchange: str,
    ca: pki.Issued,
    other_ca: pki.Issued,
    make_server: Callable[..., Flask],
    transport: FlaskTransport,
    make_client: Callable[..., FlaskClient],
) -> None:
    make_certificate, code, why = BAD_CERTIFICATES[case]
    bad = make_certificate(ca, other_ca)
    server_app = make_server(bad)
    transport.restart(server_app)
    client = make_client()
    response = client.post(HANDSHAKE, json={"key_exchange": key_exchange})
    answer = response.get_json()
    assert response.status_code == 502, answer
    assert answer["error"]["code"] == code
    assert answer["error"]["message"].startswith("server certificate refused before any secret")
    assert why in answer["error"]["message"]
    assert_stopped_before_any_secret(client, transport, server_app, answer, code)


def test_rsa_key_exchange_needs_key_encipherment_in_the_certificate(
    ca: pki.Issued,
    make_server: Callable[..., Flask],
    transport: FlaskTransport,
    make_client: Callable[..., FlaskClient],
) -> None:
    bad = pki.issue_server_certificate(ca, "server", now=NOW, key_usage_key_encipherment=False)
    server_app = make_server(bad)
    transport.restart(server_app)
    client = make_client()
    response = client.post(HANDSHAKE, json={"key_exchange": "rsa"})
    answer = response.get_json()
    assert response.status_code == 502, answer
    assert answer["error"]["code"] == "unsupported_certificate"
    assert "keyEncipherment" in answer["error"]["message"]
    assert_stopped_before_any_secret(
        client, transport, server_app, answer, "unsupported_certificate"
    )


def test_a_certificate_without_key_encipherment_still_serves_ecdhe(
    ca: pki.Issued,
    make_server: Callable[..., Flask],
    transport: FlaskTransport,
    make_client: Callable[..., FlaskClient],
) -> None:
    # The control for the test above: the same kind of certificate is fine where the key only
    # signs (RFC 8422 §5.3), so the refusal there is about key usage and nothing else.
    cert = pki.issue_server_certificate(ca, "server", now=NOW, key_usage_key_encipherment=False)
    transport.restart(make_server(cert))
    response = make_client().post(HANDSHAKE, json={"key_exchange": "ecdhe"})
    assert response.status_code == 200, response.get_json()
    assert transport.paths() == [HELLO, FINISH]


def test_the_genuine_certificate_is_accepted(
    client: FlaskClient, transport: FlaskTransport
) -> None:
    # The control for every case above: the fixtures themselves make a working pair.
    response = client.post(HANDSHAKE, json={"key_exchange": "rsa"})
    assert response.status_code == 200, response.get_json()
    assert transport.paths() == [HELLO, FINISH]
