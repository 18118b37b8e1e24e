"""POST /alert on server_svc: a client's alert ends what it names at once (RFC 5246 §7.2).

A fatal alert fails the handshake or the connection and makes its session unresumable
(§7.2.2); close_notify closes an established connection and leaves its session resumable
(§7.2.1). client_svc sends the fatal alert itself when it aborts a handshake after the hello
(tests/resilience/test_certificates.py follows it to the server).
"""

from __future__ import annotations

import pytest

from kdf_lib.errors import ALERTS
from lab_common.contract import ALERT, FINISH, HANDSHAKE, HELLO, MESSAGE, SESSION, path


def _established(client):
    answer = client.post(HANDSHAKE, json={"key_exchange": "ecdhe"}).get_json()
    return answer["connection_id"], answer["session_id"]


def _alert(server, connection_id, alert):
    return server.post(ALERT, json={"connection_id": connection_id, "alert": alert})


def test_a_fatal_alert_during_the_handshake_fails_it_at_once(server, transport):
    hello = server.post(
        HELLO,
        json={"client_random": "11" * 32, "cipher_suites": ["TLS_RSA_WITH_AES_128_CBC_SHA256"]},
    ).get_json()
    connection_id = hello["connection_id"]
    answer = _alert(server, connection_id, "bad_certificate")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {
        "connection_id": connection_id,
        "alert": "bad_certificate",
        "state": "failed",
        "closed": True,
    }
    view = server.get(path(SESSION, connection_id)).get_json()
    assert view["state"] == "failed" and view["error"] == "bad_certificate"
    assert view["trace"][-1]["action"] == "receive alert bad_certificate"
    # Nothing more is accepted on it.
    finish = server.post(
        FINISH,
        json={
            "connection_id": connection_id,
            "client_key_exchange": {"encrypted_pre_master_secret": "00" * 256},
            "finished_record": "FgMDAAA=",
        },
    )
    assert finish.status_code >= 400
    assert finish.get_json()["error"]["code"] in {"unexpected_message", "decode_error"}


def test_close_notify_closes_the_connection_and_keeps_the_session(client, server):
    connection_id, session_id = _established(client)
    answer = _alert(server, connection_id, "close_notify")
    assert answer.status_code == 200
    assert answer.get_json()["closed"] is True and answer.get_json()["state"] == "established"
    view = server.get(path(SESSION, connection_id)).get_json()
    assert view["closed"] is True and view["error"] is None
    # A closed, not failed, connection: its session resumes (RFC 5246 §7.2.1).
    resumed = client.post(HANDSHAKE, json={"resume": session_id}).get_json()
    assert resumed["resumed"] is True, resumed
    # Data after close_notify is refused (and, as any unexpected message, fatal).
    refused = client.post(MESSAGE, json={"connection_id": connection_id, "plaintext": "x"})
    assert refused.status_code in (409, 502)
    assert "close_notify" in str(refused.get_json()["error"])


def test_a_fatal_alert_on_an_established_connection_ends_its_session(client, server):
    connection_id, session_id = _established(client)
    answer = _alert(server, connection_id, "bad_record_mac")
    assert answer.status_code == 200
    assert answer.get_json()["closed"] is True
    refused = client.post(MESSAGE, json={"connection_id": connection_id, "plaintext": "x"})
    assert refused.status_code in (409, 502)
    # The server forgot the session, and the client too once the server's unexpected_message
    # answered its message: a fatal alert on either side ends it on both.
    again = client.post(HANDSHAKE, json={"resume": session_id})
    assert again.status_code == 404, again.get_json()
    assert again.get_json()["error"]["code"] == "unknown_session"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"connection_id": "ab" * 16, "alert": "no_such_alert"}, 400, "illegal_parameter"),
        ({"connection_id": "ab" * 16, "alert": "user_canceled"}, 400, "illegal_parameter"),
        ({"connection_id": "ab" * 16, "alert": 42}, 400, "decode_error"),
        ({"connection_id": "ab" * 16}, 400, "decode_error"),
        ({"connection_id": "ab" * 16, "alert": "bad_certificate", "level": 2}, 400, "decode_error"),
        ({"connection_id": "ab" * 16, "alert": "bad_certificate"}, 404, "unknown_connection"),
        ({"connection_id": "AB" * 16, "alert": "bad_certificate"}, 400, "malformed_connection_id"),
    ],
)
def test_bad_alert_requests_are_refused_in_json(server, body, status, code):
    answer = server.post(ALERT, json=body)
    assert answer.status_code == status, answer.get_json()
    assert answer.get_json()["error"]["code"] == code


def test_every_fatal_alert_name_is_taken(client, server):
    for name in sorted(ALERTS):
        connection_id, _ = _established(client)
        answer = _alert(server, connection_id, name)
        assert answer.status_code == 200, (name, answer.get_json())
        assert server.get(path(SESSION, connection_id)).get_json()["error"] == name
