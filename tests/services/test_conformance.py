"""Both services against docs/protocol.md (issue 13 §1): a dead connection answers alerts with
409, any fatal error ends the connection and its session on both sides with the alert that
ended it, client_svc checks every answer of server_svc as strictly as the hello's, and
POST /handshake's resume, groups and schemes say what they do."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.transport import FlaskTransport

import server_svc.service
from lab_common.contract import (
    ALERT,
    FINISH,
    HANDSHAKE,
    HELLO,
    MESSAGE,
    RECORDS,
    RECORDS_MEDIA_TYPE,
    SESSION,
    path,
)

RSA = "TLS_RSA_WITH_AES_128_CBC_SHA256"


def _established(client: FlaskClient, **request: Any) -> dict[str, Any]:
    answer = client.post(HANDSHAKE, json={"key_exchange": "ecdhe", **request})
    assert answer.status_code == 200, answer.get_json()
    body: dict[str, Any] = answer.get_json()
    return body


def _server_view(server_app: Flask, connection_id: str) -> dict[str, Any]:
    view: dict[str, Any] = server_app.test_client().get(path(SESSION, connection_id)).get_json()
    return view


def _server_keeps_session(server_app: Flask, session_id: str) -> bool:
    service = server_app.extensions["server_service"]
    return service.store.session(bytes.fromhex(session_id)) is not None


def _flip_last_byte(field: str) -> Any:
    def edit(body: dict[str, Any]) -> dict[str, Any]:
        record = bytearray(base64.b64decode(body[field]))
        record[-1] ^= 1
        body[field] = base64.b64encode(bytes(record)).decode()
        return body

    return edit


# -- POST /alert on a connection that has ended -----------------------------------------------


def test_an_alert_after_a_fatal_alert_is_409_unexpected_message(server: FlaskClient) -> None:
    hello = server.post(HELLO, json={"client_random": "11" * 32, "cipher_suites": [RSA]}).get_json()
    connection_id = hello["connection_id"]
    first = server.post(ALERT, json={"connection_id": connection_id, "alert": "unknown_ca"})
    assert first.status_code == 200
    again = server.post(ALERT, json={"connection_id": connection_id, "alert": "decode_error"})
    assert again.status_code == 409, again.get_json()
    assert again.get_json()["error"]["code"] == "unexpected_message"
    view = server.get(path(SESSION, connection_id)).get_json()
    assert (view["state"], view["error"]) == ("failed", "unknown_ca")


def test_an_alert_after_bad_record_mac_is_409_and_the_server_shows_failed(
    client: FlaskClient, server_app: Flask
) -> None:
    result = _established(client)
    connection_id = result["connection_id"]
    server = server_app.test_client()
    bad = base64.b64encode(b"\x17\x03\x03\x00\x20" + bytes(32)).decode()
    refused = server.post(MESSAGE, json={"connection_id": connection_id, "record": bad})
    assert refused.get_json()["error"]["code"] == "bad_record_mac"
    view = _server_view(server_app, connection_id)
    assert (view["state"], view["error"], view["closed"]) == ("failed", "bad_record_mac", True)
    for alert in ("close_notify", "bad_record_mac"):
        answer = server.post(ALERT, json={"connection_id": connection_id, "alert": alert})
        assert answer.status_code == 409, answer.get_json()
        assert answer.get_json()["error"]["code"] == "unexpected_message"
    assert not _server_keeps_session(server_app, result["session_id"])


def test_an_alert_after_close_notify_is_409(client: FlaskClient, server_app: Flask) -> None:
    result = _established(client)
    connection_id = result["connection_id"]
    server = server_app.test_client()
    closed = server.post(ALERT, json={"connection_id": connection_id, "alert": "close_notify"})
    assert closed.get_json()["state"] == "established" and closed.get_json()["closed"] is True
    assert _server_keeps_session(server_app, result["session_id"])
    again = server.post(ALERT, json={"connection_id": connection_id, "alert": "close_notify"})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "unexpected_message"
    view = _server_view(server_app, connection_id)
    assert (view["state"], view["error"], view["closed"]) == ("established", None, True)
    # The 409 is server_svc's fatal alert, as for a record after close_notify: the session ends.
    assert not _server_keeps_session(server_app, result["session_id"])


# -- any fatal error ends the connection and the session on both sides -------------------------


def test_a_reply_record_client_svc_refuses_is_alerted_and_ends_the_session_on_both_sides(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask
) -> None:
    result = _established(client)
    connection_id = result["connection_id"]
    transport.answer_edits[MESSAGE] = _flip_last_byte("record")
    answer = client.post(MESSAGE, json={"connection_id": connection_id, "plaintext": "hi"})
    assert answer.get_json()["error"]["code"] == "bad_record_mac"
    alerts = [r.body for r in transport.received if r.path == ALERT]
    assert alerts == [{"connection_id": connection_id, "alert": "bad_record_mac"}]
    server_view = _server_view(server_app, connection_id)
    assert (server_view["state"], server_view["error"]) == ("failed", "bad_record_mac")
    assert server_view["closed"] is True
    assert not _server_keeps_session(server_app, result["session_id"])
    client_view = client.get(path(SESSION, connection_id)).get_json()
    assert (client_view["state"], client_view["error"]) == ("failed", "bad_record_mac")
    assert client_view["closed"] is True


def test_a_finish_refused_by_server_svc_fails_client_svc_with_the_servers_alert(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask
) -> None:
    transport.request_edits[FINISH] = _flip_last_byte("finished_record")
    answer = client.post(HANDSHAKE, json={"key_exchange": "ecdhe"})
    error = answer.get_json()["error"]
    assert error["code"] == "bad_record_mac" and error["peer"] == "server"
    connection_id = error["connection_id"]
    client_view = client.get(path(SESSION, connection_id)).get_json()
    assert (client_view["state"], client_view["error"]) == ("failed", "bad_record_mac")
    server_view = _server_view(server_app, connection_id)
    assert (server_view["state"], server_view["error"]) == ("failed", "bad_record_mac")
    # The server sent the alert: the client sends none back (RFC 5246 §7.2.2).
    assert ALERT not in transport.paths()


def test_a_hello_answer_that_does_not_decode_leaves_the_client_failed(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask
) -> None:
    transport.answer_edits[HELLO] = lambda body: {**body, "surprise": 1}
    answer = client.post(HANDSHAKE, json={"key_exchange": "ecdhe"})
    error = answer.get_json()["error"]
    assert error["code"] == "decode_error"
    view = client.get(path(SESSION, error["connection_id"])).get_json()
    assert (view["state"], view["error"]) == ("failed", "decode_error")
    server_view = _server_view(server_app, error["connection_id"])
    assert (server_view["state"], server_view["error"]) == ("failed", "decode_error")


def test_a_failed_resumption_ends_the_session_it_offered(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask
) -> None:
    session_id = _established(client)["session_id"]
    transport.answer_edits[HELLO] = _flip_last_byte("finished_record")
    failed = client.post(HANDSHAKE, json={"resume": session_id})
    assert failed.get_json()["error"]["code"] == "bad_record_mac"
    del transport.answer_edits[HELLO]
    # RFC 5246 §7.2.2: a session whose connection ended with a fatal alert is not resumed.
    again = client.post(HANDSHAKE, json={"resume": session_id})
    assert again.status_code == 404, again.get_json()
    assert again.get_json()["error"]["code"] == "unknown_session"
    assert not _server_keeps_session(server_app, session_id)


# -- client_svc checks every answer ----------------------------------------------------------


def _edit(**changes: Any) -> Any:
    def edit(body: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    return edit


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (_edit(surprise=1), "decode_error"),
        (_edit(fingerprints=None), "decode_error"),
        (_edit(trace=None), "decode_error"),
        (_edit(trace="steps"), "decode_error"),
        (_edit(fingerprints={"master_secret": "00"}), "decode_error"),
        (_edit(connection_id="ab" * 16), "illegal_parameter"),
    ],
)
def test_a_finish_answer_is_checked_strictly(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask, edit: Any, code: str
) -> None:
    transport.answer_edits[FINISH] = edit
    answer = client.post(HANDSHAKE, json={"key_exchange": "ecdhe"})
    error = answer.get_json()["error"]
    assert error["code"] == code, error
    view = client.get(path(SESSION, error["connection_id"])).get_json()
    assert (view["state"], view["error"]) == ("failed", code)
    # The server hears the alert: its connection and session end too.
    server_view = _server_view(server_app, error["connection_id"])
    assert (server_view["state"], server_view["error"]) == ("failed", code)


def _received(**changes: Any) -> Any:
    def edit(body: dict[str, Any]) -> dict[str, Any]:
        body["received"] = {**body["received"], **changes}
        return body

    return edit


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (_edit(surprise=1), "decode_error"),
        (_edit(received=None), "decode_error"),
        (_edit(reply_seq=None), "decode_error"),
        (_edit(received={"seq": 1, "records": 1}), "decode_error"),
        (_edit(reply_seq="1"), "decode_error"),
        (_edit(connection_id="ab" * 16), "illegal_parameter"),
        (_edit(reply_seq=7), "illegal_parameter"),
        (_received(seq=5), "illegal_parameter"),
        (_received(records=2), "illegal_parameter"),
        (_received(bytes=3), "illegal_parameter"),
    ],
)
def test_a_message_answer_is_checked_strictly(
    client: FlaskClient, transport: FlaskTransport, server_app: Flask, edit: Any, code: str
) -> None:
    result = _established(client)
    connection_id = result["connection_id"]
    transport.answer_edits[MESSAGE] = edit
    answer = client.post(MESSAGE, json={"connection_id": connection_id, "plaintext": "hello"})
    error = answer.get_json()["error"]
    assert error["code"] == code, error
    assert error["delivery"] == "delivered"
    view = client.get(path(SESSION, connection_id)).get_json()
    assert (view["state"], view["error"], view["closed"]) == ("failed", code, True)
    server_view = _server_view(server_app, connection_id)
    assert (server_view["state"], server_view["error"]) == ("failed", code)
    assert not _server_keeps_session(server_app, result["session_id"])


def test_an_echo_that_is_not_the_message_is_refused(
    client: FlaskClient, server_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection_id = _established(client)["connection_id"]
    real = server_svc.service._fragments
    monkeypatch.setattr(
        server_svc.service,
        "_fragments",
        lambda data, size: real(data.replace(b"hello", b"jello"), size),
    )
    answer = client.post(MESSAGE, json={"connection_id": connection_id, "plaintext": "hello"})
    error = answer.get_json()["error"]
    assert error["code"] == "illegal_parameter", error
    server_view = _server_view(server_app, connection_id)
    assert (server_view["state"], server_view["error"]) == ("failed", "illegal_parameter")


def test_an_honest_echo_is_accepted_for_several_records(client: FlaskClient) -> None:
    connection_id = _established(client)["connection_id"]
    text = "x" * 40000
    answer = client.post(MESSAGE, json={"connection_id": connection_id, "plaintext": text})
    assert answer.status_code == 200, answer.get_json()
    reply = answer.get_json()["reply"]
    assert reply["plaintext"] == f"server_svc received 40000 bytes in records 1..3: {text}"


# -- POST /handshake: resume, groups and schemes -------------------------------------------------


@pytest.mark.parametrize(
    "conflict",
    [
        {"cipher_suite": RSA},
        {"cipher_suites": [RSA, "TLS_RSA_WITH_AES_128_GCM_SHA256"]},
        {"key_exchange": "rsa"},
        {"extended_master_secret": False},
    ],
)
def test_resume_refuses_a_contradiction(client: FlaskClient, conflict: dict[str, Any]) -> None:
    session_id = _established(client)["session_id"]
    answer = client.post(HANDSHAKE, json={"resume": session_id, **conflict})
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"]["code"] == "resume_conflict"


def test_resume_accepts_what_agrees_with_the_session(client: FlaskClient) -> None:
    first = _established(client)
    answer = client.post(
        HANDSHAKE,
        json={
            "resume": first["session_id"],
            "cipher_suite": first["cipher_suite"],
            "key_exchange": "ecdhe",
            "extended_master_secret": True,
        },
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["resumed"] is True


def _step(answer: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(s for s in answer["trace"] if s["kind"] == kind)


def test_handshake_narrows_groups_and_signature_algorithms(client: FlaskClient) -> None:
    answer = _established(
        client, supported_groups=["secp384r1"], signature_algorithms=["rsa_pkcs1_sha384"]
    )
    hello = _step(answer, "send_client_hello")["data"]["extensions"]
    assert hello["supported_groups"] == ["secp384r1"]
    assert hello["signature_algorithms"] == ["rsa_pkcs1_sha384"]
    kx = _step(answer, "send_server_key_exchange")["data"]
    assert (kx["named_curve"], kx["signature_algorithm"]) == ("secp384r1", "rsa_pkcs1_sha384")


def test_a_reconnect_offers_the_same_groups_and_schemes(
    client: FlaskClient, client_app: Flask
) -> None:
    answer = _established(client, supported_groups=["secp256r1"])
    service = client_app.extensions["client_service"]
    with service.store.update(answer["connection_id"]) as entry:
        assert entry.request.supported_groups == ("secp256r1",)
        assert entry.request.signature_algorithms is None


@pytest.mark.parametrize(
    ("request_body", "code"),
    [
        ({"supported_groups": ["x448"]}, "illegal_parameter"),
        ({"signature_algorithms": ["ed25519"]}, "illegal_parameter"),
        ({"supported_groups": []}, "decode_error"),
        ({"signature_algorithms": []}, "decode_error"),
        ({"supported_groups": ["x25519", "x25519"]}, "decode_error"),
        ({"signature_algorithms": "rsa_pkcs1_sha256"}, "decode_error"),
    ],
)
def test_bad_groups_and_schemes_are_refused(
    client: FlaskClient, transport: FlaskTransport, request_body: dict[str, Any], code: str
) -> None:
    answer = client.post(HANDSHAKE, json=request_body)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"]["code"] == code
    assert transport.paths() == []  # refused before anything was sent


# -- the spec's smaller rules, through server_svc's HTTP API -------------------------------------


@pytest.mark.parametrize("endpoint", ["json", "binary"])
def test_an_empty_record_is_a_record_error_that_ends_the_connection(
    client: FlaskClient, server_app: Flask, endpoint: str
) -> None:
    connection_id = _established(client)["connection_id"]
    server = server_app.test_client()
    if endpoint == "json":
        answer = server.post(MESSAGE, json={"connection_id": connection_id, "record": ""})
    else:
        answer = server.post(
            path(RECORDS, connection_id), data=b"", content_type=RECORDS_MEDIA_TYPE
        )
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, "bad_record_mac")
    view = _server_view(server_app, connection_id)
    assert (view["state"], view["error"], view["closed"]) == ("failed", "bad_record_mac", True)


def test_a_resumed_server_hello_answers_only_the_extensions_offered(
    client: FlaskClient, server_app: Flask
) -> None:
    first = _established(client)
    hello = {
        "client_random": "22" * 32,
        "cipher_suites": [first["cipher_suite"]],
        "session_id": first["session_id"],
        "extensions": {
            "extended_master_secret": True,
            "server_name": "server",
            "supported_groups": [],
        },
    }
    answer = server_app.test_client().post(HELLO, json=hello).get_json()
    assert answer["resumed"] is True, answer
    assert answer["extensions"]["ec_point_formats"] is None
    # The same resumption offering groups gets the extension back.
    hello["client_random"] = "33" * 32
    del hello["extensions"]["supported_groups"]
    answer = server_app.test_client().post(HELLO, json=hello).get_json()
    assert answer["resumed"] is True
    assert answer["extensions"]["ec_point_formats"] == ["uncompressed"]
