"""A man in the middle edits the handshake in transit: the side that sees it aborts, and no
application data ever flows on that connection.

The transport between client_svc and server_svc edits the ClientHello on its way to the server or
the server's answer on its way back. Each edit is caught by one of TLS's defences:

* the client checks the ServerHello against its own offer (illegal_parameter,
  unsupported_extension, RFC 5246 §7.4.1.3-4);
* the ServerKeyExchange signature covers both randoms and the ECDH key (decrypt_error,
  RFC 8422 §5.4), so a changed random or a replayed key exchange fails at the client;
* anything else changes the transcript or the keys, which both Finished messages cover: the
  server cannot open the client's Finished (bad_record_mac: with the extended master secret a
  changed transcript even changes the keys, RFC 7627) or its verify_data is wrong
  (decrypt_error), and client_svc reports the server's alert as a 502 with "peer": "server".
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.transport import FlaskTransport

from lab_common.contract import ALERT, FINISH, HANDSHAKE, HEALTH, HELLO, MESSAGE, SESSION, path

ECDHE_GCM = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
RSA_CBC_SHA256 = "TLS_RSA_WITH_AES_256_CBC_SHA256"
RSA_CBC_SHA = "TLS_RSA_WITH_AES_128_CBC_SHA"

Edit = Callable[[dict[str, Any]], dict[str, Any]]


def edit(**changes: Any) -> Edit:
    """Set top-level fields."""

    def apply(body: dict[str, Any]) -> dict[str, Any]:
        body.update(changes)
        return body

    return apply


def edit_extensions(**changes: Any) -> Edit:
    def apply(body: dict[str, Any]) -> dict[str, Any]:
        body["extensions"].update(changes)
        return body

    return apply


def flip_hex(field: str) -> Edit:
    """Change one bit of a hex field (a random)."""

    def apply(body: dict[str, Any]) -> dict[str, Any]:
        value = bytearray(bytes.fromhex(body[field]))
        value[7] ^= 0x01
        body[field] = value.hex()
        return body

    return apply


def flip_b64(*path: str) -> Edit:
    """Change one bit of a base64 field (a signature, a record), given by its path."""

    def apply(body: dict[str, Any]) -> dict[str, Any]:
        holder = body
        for key in path[:-1]:
            holder = holder[key]
        value = bytearray(base64.b64decode(holder[path[-1]]))
        value[len(value) // 2] ^= 0x01
        holder[path[-1]] = base64.b64encode(bytes(value)).decode()
        return body

    return apply


@dataclass(frozen=True)
class Tamper:
    request: dict[str, Any]  # the POST /handshake body
    where: str  # "hello request", "hello answer" or "finish answer"
    change: Edit
    status: int
    code: str
    by_server: bool  # server_svc detects it (client_svc answers 502 with "peer": "server")
    finish_sent: bool  # the client got as far as sending its key exchange and Finished


CASES = {
    # --- the ClientHello on its way to the server ---
    "hello_drops_the_strongest_suite": Tamper(
        {"cipher_suites": [ECDHE_GCM, RSA_CBC_SHA]},
        "hello request",
        edit(cipher_suites=[RSA_CBC_SHA]),
        502,
        "bad_record_mac",
        by_server=True,
        finish_sent=True,
    ),
    "hello_drops_the_strongest_suite_without_ems": Tamper(
        {"cipher_suites": [ECDHE_GCM, RSA_CBC_SHA], "extended_master_secret": False},
        "hello request",
        edit(cipher_suites=[RSA_CBC_SHA]),
        502,
        "decrypt_error",
        by_server=True,
        finish_sent=True,
    ),
    "hello_drops_extended_master_secret": Tamper(
        {"key_exchange": "rsa"},
        "hello request",
        edit_extensions(extended_master_secret=False),
        502,
        "decrypt_error",
        by_server=True,
        finish_sent=True,
    ),
    "hello_drops_encrypt_then_mac": Tamper(
        {"cipher_suite": RSA_CBC_SHA256},
        "hello request",
        edit_extensions(encrypt_then_mac=False),
        502,
        "bad_record_mac",
        by_server=True,
        finish_sent=True,
    ),
    "hello_changes_client_random_rsa": Tamper(
        {"key_exchange": "rsa"},
        "hello request",
        flip_hex("client_random"),
        502,
        "bad_record_mac",
        by_server=True,
        finish_sent=True,
    ),
    "hello_changes_client_random_ecdhe": Tamper(
        {"key_exchange": "ecdhe"},
        "hello request",
        flip_hex("client_random"),
        400,
        "decrypt_error",
        by_server=False,
        finish_sent=False,
    ),
    # --- the server's answer on its way back ---
    "answer_picks_a_suite_not_offered": Tamper(
        {"cipher_suite": RSA_CBC_SHA256},
        "hello answer",
        edit(cipher_suite=RSA_CBC_SHA),
        400,
        "illegal_parameter",
        by_server=False,
        finish_sent=False,
    ),
    "answer_downgrades_to_a_weaker_offered_suite": Tamper(
        {"cipher_suites": [RSA_CBC_SHA256, RSA_CBC_SHA]},
        "hello answer",
        edit(cipher_suite=RSA_CBC_SHA),
        502,
        "bad_record_mac",
        by_server=True,
        finish_sent=True,
    ),
    "answer_adds_encrypt_then_mac_to_an_aead_suite": Tamper(
        {"key_exchange": "ecdhe"},
        "hello answer",
        edit_extensions(encrypt_then_mac=True),
        400,
        "unsupported_extension",
        by_server=False,
        finish_sent=False,
    ),
    "answer_adds_extended_master_secret_not_offered": Tamper(
        {"key_exchange": "rsa", "extended_master_secret": False},
        "hello answer",
        edit_extensions(extended_master_secret=True),
        400,
        "unsupported_extension",
        by_server=False,
        finish_sent=False,
    ),
    "answer_drops_extended_master_secret": Tamper(
        {"key_exchange": "rsa"},
        "hello answer",
        edit_extensions(extended_master_secret=False),
        502,
        "bad_record_mac",
        by_server=True,
        finish_sent=True,
    ),
    "answer_changes_server_random_rsa": Tamper(
        {"key_exchange": "rsa"},
        "hello answer",
        flip_hex("server_random"),
        502,
        "bad_record_mac",
        by_server=True,
        finish_sent=True,
    ),
    "answer_changes_server_random_ecdhe": Tamper(
        {"key_exchange": "ecdhe"},
        "hello answer",
        flip_hex("server_random"),
        400,
        "decrypt_error",
        by_server=False,
        finish_sent=False,
    ),
    "answer_changes_a_server_key_exchange_signature_byte": Tamper(
        {"key_exchange": "ecdhe"},
        "hello answer",
        flip_b64("server_key_exchange", "signature"),
        400,
        "decrypt_error",
        by_server=False,
        finish_sent=False,
    ),
    "answer_changes_the_server_finished_record": Tamper(
        {"key_exchange": "ecdhe"},
        "finish answer",
        flip_b64("finished_record"),
        400,
        "bad_record_mac",
        by_server=False,
        finish_sent=True,
    ),
}

PATHS = {
    "hello request": HELLO,
    "hello answer": HELLO,
    "finish answer": FINISH,
}


def assert_no_application_data(
    client: FlaskClient,
    transport: FlaskTransport,
    server_app: Flask,
    error: dict[str, Any],
    by_server: bool,
) -> None:
    connection_id = error["connection_id"]
    assert MESSAGE not in transport.paths()
    if by_server:
        server_view = server_app.test_client().get(path(SESSION, connection_id)).get_json()
        assert server_view["state"] == "failed"
    view = client.get(path(SESSION, connection_id)).get_json()
    assert view["failure"]["code"] == error["code"]
    assert view["closed"] in (None, True)
    refused = client.post(MESSAGE, json={"plaintext": "secret", "connection_id": connection_id})
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "unexpected_message"
    latest = client.post(MESSAGE, json={"plaintext": "secret"})
    assert latest.status_code == 409 and latest.get_json()["error"]["code"] == "no_connection"
    assert MESSAGE not in transport.paths()
    assert client.get(HEALTH).get_json()["connections"] == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampering_in_transit_fails_the_handshake_and_no_data_flows(
    case: str, client: FlaskClient, transport: FlaskTransport, server_app: Flask
) -> None:
    tamper = CASES[case]
    target = PATHS[tamper.where]
    if tamper.where == "hello request":
        transport.request_edits[target] = tamper.change
    else:
        transport.answer_edits[target] = tamper.change
    response = client.post(HANDSHAKE, json=tamper.request)
    error = response.get_json()["error"]
    assert (response.status_code, error["code"]) == (tamper.status, tamper.code), error
    assert error.get("peer") == ("server" if tamper.by_server else None)
    assert (FINISH in transport.paths()) is tamper.finish_sent
    assert_no_application_data(client, transport, server_app, error, tamper.by_server)


def test_a_server_key_exchange_replayed_from_an_older_handshake_is_refused(
    make_client: Callable[..., FlaskClient],
    client: FlaskClient,
    transport: FlaskTransport,
    server_app: Flask,
) -> None:
    # An earlier, genuine handshake (another client) gives the attacker a validly signed
    # ServerKeyExchange; its signature covers that handshake's randoms, not this one's.
    captured: dict[str, Any] = {}

    def capture(body: dict[str, Any]) -> dict[str, Any]:
        captured["server_key_exchange"] = body["server_key_exchange"]
        return body

    transport.answer_edits[HELLO] = capture
    older = make_client().post(HANDSHAKE, json={"key_exchange": "ecdhe"})
    assert older.status_code == 200 and older.get_json()["fingerprints_match"] is True
    transport.received.clear()

    def replay(body: dict[str, Any]) -> dict[str, Any]:
        assert body["server_key_exchange"] != captured["server_key_exchange"]
        body["server_key_exchange"] = captured["server_key_exchange"]
        return body

    transport.answer_edits[HELLO] = replay
    response = client.post(HANDSHAKE, json={"key_exchange": "ecdhe"})
    error = response.get_json()["error"]
    assert (response.status_code, error["code"]) == (400, "decrypt_error"), error
    # No key exchange answered the replayed key: the hello, then the client's fatal alert.
    assert transport.paths() == [HELLO, ALERT]
    assert_no_application_data(client, transport, server_app, error, by_server=False)


@pytest.mark.parametrize("key_exchange", ["rsa", "ecdhe"])
def test_an_untouched_wire_lets_data_flow(
    client: FlaskClient, transport: FlaskTransport, key_exchange: str
):
    # The control: the same wire without edits carries a handshake and a message.
    assert client.post(HANDSHAKE, json={"key_exchange": key_exchange}).status_code == 200
    answer = client.post(MESSAGE, json={"plaintext": "hello"})
    assert answer.status_code == 200
    assert transport.paths() == [HELLO, FINISH, MESSAGE]


def test_offering_several_suites_lets_the_server_take_the_first_it_supports(
    client: FlaskClient,
) -> None:
    # The honest counterpart of the suite-dropping cases: with nobody in the middle the
    # strongest offered suite wins.
    result = client.post(HANDSHAKE, json={"cipher_suites": [ECDHE_GCM, RSA_CBC_SHA]})
    assert result.status_code == 200
    assert result.get_json()["cipher_suite"] == ECDHE_GCM
