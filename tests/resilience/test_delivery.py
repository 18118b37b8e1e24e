"""What client_svc tells the caller about a message when something fails, and when it resends.

The rule (docs/resilience.md): a message is reported delivered only when server_svc processed
it, and it is never processed twice. Every failed POST /message carries ``delivery``:

* ``not_delivered`` — the request never left, or server_svc refused it before opening the
  record (a 4xx, unknown_connection included): safe to send again on a new connection;
* ``unknown`` — it was sent and no usable answer came (a timeout, a broken connection, a 5xx):
  504 ``outcome_unknown``, and client_svc never resends it on its own;
* ``delivered`` — server_svc processed it, but its reply could not be opened.

A server_svc restart shows up as unknown_connection: 409 ``connection_lost``; with
``auto_reconnect`` client_svc handshakes again and sends the message once on the new connection.
Each test checks what server_svc actually processed against what client_svc reported.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.pki import NOW
from helpers.transport import FlaskTransport

from client_svc.upstream import UpstreamError
from kdf_lib import pki
from lab_common.contract import ALERT, FINISH, HANDSHAKE, HEALTH, HELLO, MESSAGE, SESSION, path

CHACHA = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"


def start(client: FlaskClient, **body: Any) -> dict[str, Any]:
    """A handshake and one message that arrives: the conversation a fault interrupts."""
    result = client.post(HANDSHAKE, json=body).get_json()
    first = client.post(MESSAGE, json={"plaintext": "first"})
    assert first.status_code == 200
    return result


def processed(server_app: Flask, connection_id: str) -> int:
    """How many messages server_svc opened and answered on the connection."""
    view = server_app.test_client().get(path(SESSION, connection_id)).get_json()
    return int(view["messages"])


def send(client: FlaskClient, **body: Any) -> tuple[int, dict[str, Any]]:
    response = client.post(MESSAGE, json={"plaintext": "the message", **body})
    return response.status_code, response.get_json()


# --- a server restart -------------------------------------------------------------------------


def test_a_restarted_server_is_reported_as_connection_lost(
    client: FlaskClient, transport: FlaskTransport, make_server: Callable[..., Flask]
) -> None:
    old = start(client)["connection_id"]
    fresh_server = make_server()
    transport.restart(fresh_server)
    status, answer = send(client)
    error = answer["error"]
    assert (status, error["code"]) == (409, "connection_lost")
    assert error["connection_id"] == old and error["delivery"] == "not_delivered"
    assert "no longer knows" in error["message"] and "POST /handshake" in error["message"]
    # The new server saw the record and refused it before opening anything.
    assert transport.received[-1].path == MESSAGE and transport.received[-1].status == 404
    assert fresh_server.test_client().get(HEALTH).get_json()["connections"] == 0
    # The connection stays lost: the same answer again, without another request to the server.
    requests = len(transport.received)
    status, again = send(client, connection_id=old)
    assert (status, again["error"]["code"]) == (409, "connection_lost")
    assert len(transport.received) == requests
    assert client.get(path(SESSION, old)).get_json()["failure"]["code"] == "connection_lost"


def test_auto_reconnect_replaces_a_lost_connection_and_sends_the_message_once(
    client: FlaskClient, transport: FlaskTransport, make_server: Callable[..., Flask]
) -> None:
    before = start(client, cipher_suite=CHACHA)
    old = before["connection_id"]
    fresh_server = make_server()
    transport.restart(fresh_server)
    transport.received.clear()
    status, answer = send(client, auto_reconnect=True)
    assert status == 200, answer
    new = answer["connection_id"]
    assert new != old
    assert answer["reconnected"] == {
        "previous_connection_id": old,
        "reason": "connection_lost",
        "resumed": False,  # the restarted server's session cache is empty: a full handshake
        "session_id": answer["reconnected"]["session_id"],
        "cipher_suite": CHACHA,
    }
    assert answer["reply"]["plaintext"].endswith("the message")
    assert [(r.path, r.status) for r in transport.received] == [
        (MESSAGE, 404),
        (HELLO, 200),
        (FINISH, 200),
        (MESSAGE, 200),
    ]
    # It offered the old session first, then fell back to a full handshake.
    assert transport.received[1].body["session_id"] == before["session_id"]
    assert transport.received[1].body["cipher_suites"] == [CHACHA]
    assert processed(fresh_server, new) == 1
    # The new connection is now the latest; the dead session is no longer offered.
    status, later = send(client)
    assert status == 200 and later["connection_id"] == new and later["reconnected"] is None
    resume = client.post(HANDSHAKE, json={"resume": before["session_id"]})
    assert resume.status_code == 404 and resume.get_json()["error"]["code"] == "unknown_session"


def test_auto_reconnect_resumes_when_only_the_connection_was_forgotten(
    client: FlaskClient, server_app: Flask
) -> None:
    # The server expired the connection (CONNECTION_TTL) but still holds the session.
    before = start(client, key_exchange="ecdhe")
    server_app.extensions["server_service"].store.connections.pop(before["connection_id"])
    status, answer = send(client, auto_reconnect=True)
    assert status == 200, answer
    assert answer["reconnected"]["resumed"] is True
    assert answer["reconnected"]["session_id"] == before["session_id"]
    assert processed(server_app, answer["connection_id"]) == 1


def test_a_later_call_with_auto_reconnect_replaces_a_connection_lost_earlier(
    client: FlaskClient, transport: FlaskTransport, make_server: Callable[..., Flask]
) -> None:
    old = start(client)["connection_id"]
    transport.restart(make_server())
    assert send(client)[0] == 409
    status, answer = send(client, connection_id=old, auto_reconnect=True)
    assert status == 200 and answer["reconnected"]["previous_connection_id"] == old


def test_auto_reconnect_can_be_the_configured_default(
    make_client: Callable[..., FlaskClient],
    transport: FlaskTransport,
    make_server: Callable[..., Flask],
) -> None:
    client = make_client(AUTO_RECONNECT=True)
    assert client.get(HEALTH).get_json()["auto_reconnect"] is True
    start(client)
    transport.restart(make_server())
    status, answer = send(client)
    assert status == 200 and answer["reconnected"]["reason"] == "connection_lost"
    # The request's own false wins over the configured default.
    transport.restart(make_server())
    status, answer = send(client, auto_reconnect=False)
    assert (status, answer["error"]["code"]) == (409, "connection_lost")


def test_a_message_is_resent_at_most_once(
    client: FlaskClient, transport: FlaskTransport, make_server: Callable[..., Flask]
) -> None:
    # The server restarts before every message: the resend meets a lost connection again,
    # and client_svc gives up instead of looping.
    old = start(client)["connection_id"]

    def restart_first(path: str, body: dict[str, Any]) -> None:
        if path == MESSAGE:
            transport.restart(make_server())

    transport.before.append(restart_first)
    transport.received.clear()
    status, answer = send(client, auto_reconnect=True)
    error = answer["error"]
    assert (status, error["code"]) == (409, "connection_lost")
    assert error["previous_connection_id"] == old and error["connection_id"] != old
    assert error["delivery"] == "not_delivered"
    assert [r.path for r in transport.received].count(MESSAGE) == 2


def test_a_failed_reconnect_reports_the_message_not_delivered(
    client: FlaskClient,
    transport: FlaskTransport,
    make_server: Callable[..., Flask],
) -> None:
    # The server comes back with a certificate the client does not trust.
    old = start(client)["connection_id"]
    impostor_ca = pki.create_ca("Impostor CA", now=NOW)
    impostor = pki.issue_server_certificate(impostor_ca, "server", now=NOW)
    transport.restart(make_server(impostor))
    transport.received.clear()
    status, answer = send(client, auto_reconnect=True)
    error = answer["error"]
    assert (status, error["code"]) == (502, "unknown_ca")
    assert error["previous_connection_id"] == old and error["delivery"] == "not_delivered"
    assert [r.path for r in transport.received] == [MESSAGE, HELLO, ALERT]


def test_a_restart_between_hello_and_finish_fails_the_handshake_as_connection_lost(
    client: FlaskClient, transport: FlaskTransport, make_server: Callable[..., Flask]
) -> None:
    def restart_before_finish(path: str, body: dict[str, Any]) -> None:
        if path == FINISH:
            transport.restart(make_server())

    transport.before.append(restart_before_finish)
    response = client.post(HANDSHAKE, json={})
    error = response.get_json()["error"]
    assert (response.status_code, error["code"]) == (409, "connection_lost")
    assert "run POST /handshake again" in error["message"]
    assert client.get(HEALTH).get_json()["connections"] == 0


# --- the three delivery outcomes --------------------------------------------------------------


def test_a_request_that_never_left_is_not_delivered(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask
) -> None:
    connection_id = start(client)["connection_id"]

    def refuse(path: str, body: dict[str, Any]) -> None:
        if path == MESSAGE:
            raise UpstreamError("upstream_unavailable", "no connection", 502, sent=False)

    transport.before.append(refuse)
    status, answer = send(client, auto_reconnect=True)
    error = answer["error"]
    assert (status, error["code"]) == (502, "upstream_unavailable")
    assert error["delivery"] == "not_delivered" and error["connection_id"] == connection_id
    assert processed(server_app, connection_id) == 1  # only the first message
    # Not a lost connection, so no reconnect; and the connection is closed: its record's
    # sequence number is spent on this side only.
    assert transport.paths().count(HELLO) == 1
    transport.before.clear()
    status, after = send(client)
    assert (status, after["error"]["code"]) == (409, "unexpected_message")
    assert "upstream_unavailable" in after["error"]["message"]


@pytest.mark.parametrize("cause", ["upstream_timeout", "upstream_unavailable"])
def test_an_answer_lost_after_sending_is_outcome_unknown_and_never_resent(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask, cause: str
) -> None:
    connection_id = start(client)["connection_id"]

    def lose_answer(path: str, body: dict[str, Any]) -> None:
        if path == MESSAGE:
            raise UpstreamError(cause, "no answer", 504, sent=True)

    transport.after.append(lose_answer)
    status, answer = send(client, auto_reconnect=True)
    error = answer["error"]
    assert (status, error["code"]) == (504, "outcome_unknown")
    assert error["delivery"] == "unknown" and error["cause"] == cause
    assert "may or may not have processed" in error["message"]
    # It was processed, which is why client_svc must not call it "not delivered" ...
    assert processed(server_app, connection_id) == 2
    # ... and why it is not resent, even with auto_reconnect.
    assert transport.paths().count(MESSAGE) == 2 and transport.paths().count(HELLO) == 1
    transport.after.clear()
    status, after = send(client, connection_id=connection_id, auto_reconnect=True)
    assert (status, after["error"]["code"]) == (409, "unexpected_message")
    assert "outcome_unknown" in after["error"]["message"]


def _json_error(status: int, code: str) -> Callable[[int, bytes], tuple[int, bytes]]:
    body = json.dumps({"error": {"code": code, "message": "replaced"}}).encode()
    return lambda _status, _data: (status, body)


@pytest.mark.parametrize(
    ("replacement", "status", "code", "delivery"),
    [
        # server_svc's own answer after it opened the record: it may have processed it.
        (_json_error(500, "internal_error"), 504, "outcome_unknown", "unknown"),
        # Not server_svc's JSON at all (a proxy's page): no way to tell.
        (lambda s, d: (200, b"<html>ok</html>"), 504, "outcome_unknown", "unknown"),
        (lambda s, d: (502, b"<html>bad gateway</html>"), 504, "outcome_unknown", "unknown"),
        # A 4xx is a refusal before anything changed.
        (lambda s, d: (413, b"<html>too large</html>"), 502, "upstream_bad_response", None),
    ],
)
def test_unusable_answers_are_classified_by_what_the_server_may_have_done(
    client: FlaskClient,
    transport: FlaskTransport,
    replacement: Callable[[int, bytes], tuple[int, bytes]],
    status: int,
    code: str,
    delivery: str | None,
) -> None:
    start(client)
    transport.replacements[MESSAGE] = replacement
    got, answer = send(client, auto_reconnect=True)
    error = answer["error"]
    assert (got, error["code"]) == (status, code)
    assert error["delivery"] == (delivery or "not_delivered")
    assert transport.paths().count(MESSAGE) == 2  # never resent


def test_a_record_the_server_refuses_is_not_delivered(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask
) -> None:
    connection_id = start(client)["connection_id"]

    def corrupt(body: dict[str, Any]) -> dict[str, Any]:
        record = bytearray(base64.b64decode(body["record"]))
        record[-1] ^= 1
        body["record"] = base64.b64encode(bytes(record)).decode()
        return body

    transport.request_edits[MESSAGE] = corrupt
    status, answer = send(client)
    error = answer["error"]
    assert (status, error["code"], error["peer"]) == (502, "bad_record_mac", "server")
    assert error["delivery"] == "not_delivered"
    assert processed(server_app, connection_id) == 1


def test_a_reply_that_cannot_be_opened_was_still_delivered(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask
) -> None:
    result = start(client)
    connection_id = result["connection_id"]

    def corrupt(body: dict[str, Any]) -> dict[str, Any]:
        record = bytearray(base64.b64decode(body["record"]))
        record[-1] ^= 1
        body["record"] = base64.b64encode(bytes(record)).decode()
        return body

    transport.answer_edits[MESSAGE] = corrupt
    status, answer = send(client)
    error = answer["error"]
    assert (status, error["code"]) == (400, "bad_record_mac")
    assert error["delivery"] == "delivered" and error["connection_id"] == connection_id
    assert processed(server_app, connection_id) == 2
    # A fatal alert: the session cannot be resumed (RFC 5246 §7.2.2).
    resume = client.post(HANDSHAKE, json={"resume": result["session_id"]})
    assert resume.status_code == 404
