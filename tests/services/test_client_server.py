"""client_svc driving server_svc in-process: the API as users call it, without a network."""

from __future__ import annotations

import base64
import json
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from client_svc import create_app as create_client_app
from kdf_lib import keylog, pki
from kdf_lib.suites import SUITES
from lab_common.contract import (
    FINISH,
    HANDSHAKE,
    HEALTH,
    HELLO,
    MESSAGE,
    RECORDS,
    RECORDS_MEDIA_TYPE,
    SESSION,
    path,
)


def handshake(client, **body):
    response = client.post(HANDSHAKE, json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_both_sides_derive_the_same_keys_for_every_suite(client, server, suite):
    result = handshake(client, cipher_suite=suite)
    assert result["cipher_suite"] == suite
    server_view = server.get(path(SESSION, result["connection_id"])).get_json()
    assert server_view["state"] == "established"
    assert server_view["fingerprints"] == result["fingerprints"]
    assert result["fingerprints_match"] is True
    assert server_view["client_random"] == result["client_random"]
    assert server_view["server_random"] == result["server_random"]
    assert result["extended_master_secret"] is True
    # Encrypt-then-MAC only means something for CBC suites.
    assert result["encrypt_then_mac"] is (SUITES[suite].kind == "cbc_hmac")


def test_default_handshake_uses_the_seed_example_suite(client):
    result = handshake(client)
    assert result["cipher_suite"] == "TLS_RSA_WITH_AES_256_CBC_SHA256"
    assert result["key_exchange"] == "rsa"
    layout = {part["name"]: part for part in result["key_block_layout"]}
    # RFC 5246 §6.3 order: MAC keys first, then the encryption keys, then the IVs.
    assert [layout[n]["start"] for n in layout] == [0, 32, 64, 96, 128, 144]


def test_ecdhe_handshake_defaults_to_aes_gcm(client):
    result = handshake(client, key_exchange="ecdhe")
    assert result["cipher_suite"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    actions = [step["action"] for step in result["trace"]]
    assert "send ServerKeyExchange" in actions and "verify ServerKeyExchange" in actions


def test_dhe_handshake_defaults_to_aes_gcm_in_an_rfc_7919_group(client, server):
    result = handshake(client, key_exchange="dhe")
    assert result["cipher_suite"] == "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"
    assert result["key_exchange"] == "dhe"
    steps = {step["kind"]: step for step in result["trace"]}
    assert steps["send_server_key_exchange"]["data"]["named_group"] == "ffdhe2048"
    assert steps["send_dh_public_key"]["actor"] == "client"
    assert steps["dh_shared_secret"]["actor"] == "server"
    server_view = server.get(path(SESSION, result["connection_id"])).get_json()
    assert server_view["fingerprints"] == result["fingerprints"]


def test_dhe_takes_the_group_the_client_narrowed_its_offer_to(client):
    response = client.post(
        HANDSHAKE, json={"key_exchange": "dhe", "supported_groups": ["ffdhe3072"]}
    )
    assert response.status_code == 200, response.get_json()
    steps = {step["kind"]: step for step in response.get_json()["trace"]}
    assert steps["send_server_key_exchange"]["data"]["named_group"] == "ffdhe3072"


def test_resumption_keeps_the_master_secret_and_changes_the_keys(client, server):
    first = handshake(client, key_exchange="ecdhe")
    second = handshake(client, resume=first["session_id"])
    assert second["resumed"] is True
    assert second["session_id"] == first["session_id"]
    assert second["fingerprints"]["master_secret"] == first["fingerprints"]["master_secret"]
    assert second["fingerprints"]["key_block"] != first["fingerprints"]["key_block"]
    assert second["client_random"] != first["client_random"]
    server_view = server.get(path(SESSION, second["connection_id"])).get_json()
    assert server_view["resumed"] is True
    assert server_view["fingerprints"] == second["fingerprints"]
    # An abbreviated handshake has no certificate and no key exchange.
    actions = {step["action"] for step in second["trace"]}
    assert "verify Certificate" not in actions
    assert "reuse master secret" in actions


def test_resuming_an_unknown_session_is_a_clear_404(client):
    response = client.post(HANDSHAKE, json={"resume": "ab" * 32})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "unknown_session"


def test_messages_travel_both_ways_with_rising_sequence_numbers(client, server):
    result = handshake(client)
    first = client.post(MESSAGE, json={"plaintext": "hello server"}).get_json()
    second = client.post(MESSAGE, json={"plaintext": "again"}).get_json()
    assert first["connection_id"] == result["connection_id"]
    # The Finished records used sequence number 0 in each direction.
    assert (first["sent"]["seq"], first["reply"]["seq"]) == (1, 1)
    assert (second["sent"]["seq"], second["reply"]["seq"]) == (2, 2)
    assert first["reply"]["plaintext"].endswith("hello server")
    record = base64.b64decode(first["sent"]["record"])
    assert record[:3] == b"\x17\x03\x03"  # application_data, TLS 1.2
    assert b"hello server" not in record
    view = server.get(path(SESSION, result["connection_id"])).get_json()
    assert view["sequence_numbers"] == {"read": 3, "write": 3}


def test_a_large_message_spans_several_records(client):
    handshake(client, key_exchange="ecdhe")
    text = "x" * 40_000
    answer = client.post(MESSAGE, json={"plaintext": text}).get_json()
    assert answer["sent"]["records"] == 3  # 2^14-byte fragments
    assert answer["reply"]["plaintext"].endswith(text)


def test_no_secret_appears_in_any_response_or_log(client, server, client_app, capsys):
    result = handshake(client)
    client.post(MESSAGE, json={"plaintext": "secret-free"})
    log_text = Path(client_app.extensions["settings"].sslkeylogfile).read_text()
    master = keylog.find_master_secret(log_text, bytes.fromhex(result["client_random"]))
    assert master is not None
    bodies = [
        json.dumps(result),
        server.get(path(SESSION, result["connection_id"])).get_data(as_text=True),
        client.get(path(SESSION, result["connection_id"])).get_data(as_text=True),
        capsys.readouterr().out,
    ]
    assert (
        '"event":"handshake"' in bodies[-1]
    )  # the logs were captured, so the check means something
    for body in bodies:
        assert master.hex() not in body


def test_key_log_lines_let_a_third_party_reproduce_the_keys(client, client_app):
    result = handshake(client)
    lines = Path(client_app.extensions["settings"].sslkeylogfile).read_text().splitlines()
    assert re.fullmatch(r"CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}", lines[-1])
    entry = keylog.parse_line(lines[-1])
    assert entry is not None and entry.client_random.hex() == result["client_random"]


def test_no_key_log_is_written_unless_configured(ca, transport, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = create_client_app({"TRUST_ANCHORS": (ca.certificate,), "TRANSPORT": transport})
    assert app.test_client().post(HANDSHAKE, json={}).status_code == 200
    assert list(tmp_path.iterdir()) == []


def test_revealed_secrets_are_equal_on_both_sides(make_server, make_client_app, transport):
    server_app = make_server(REVEAL_SECRETS=True)
    transport.restart(server_app)
    client_app = make_client_app(REVEAL_SECRETS=True)
    result = client_app.test_client().post(HANDSHAKE, json={"key_exchange": "ecdhe"}).get_json()
    server_view = server_app.test_client().get(path(SESSION, result["connection_id"])).get_json()
    assert result["secrets_revealed"] is True
    assert len(result["secrets"]["master_secret"]) == 96
    assert result["secrets"] == server_view["secrets"]


def test_an_untrusted_server_certificate_aborts_before_any_secret_is_sent(transport):
    other_ca = pki.create_ca("Some Other CA", now=datetime.now(UTC))
    app = create_client_app({"TRUST_ANCHORS": (other_ca.certificate,), "TRANSPORT": transport})
    response = app.test_client().post(HANDSHAKE, json={})
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "unknown_ca"
    assert ("POST", FINISH) not in transport.calls


def test_a_certificate_for_another_name_is_refused(ca, transport):
    app = create_client_app(
        {"TRUST_ANCHORS": (ca.certificate,), "TRANSPORT": transport, "SERVER_NAME": "bank.example"}
    )
    # Flask's test client would send SERVER_NAME, here the TLS name, as the Host.
    response = app.test_client().post(HANDSHAKE, json={}, base_url="http://localhost")
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "bad_certificate"
    assert ("POST", FINISH) not in transport.calls


def test_an_unknown_suite_is_refused_with_illegal_parameter(client):
    response = client.post(HANDSHAKE, json={"cipher_suite": "TLS_NULL_WITH_NULL_NULL"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "illegal_parameter"


def test_a_suite_that_contradicts_the_key_exchange_is_refused(client):
    response = client.post(
        HANDSHAKE,
        json={"key_exchange": "ecdhe", "cipher_suite": "TLS_RSA_WITH_AES_128_CBC_SHA"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "illegal_parameter"


def test_message_before_any_handshake_is_a_clear_409(client):
    response = client.post(MESSAGE, json={"plaintext": "too early"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "no_connection"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{", "application/json", 400, "decode_error"),
        ('{"plaintext": "a", "plaintext": "b"}', "application/json", 400, "decode_error"),
        ('{"plaintext": "a", "extra": 1}', "application/json", 400, "decode_error"),
        ('{"plaintext": 5}', "application/json", 400, "decode_error"),
        ("[1, 2]", "application/json", 400, "decode_error"),
        ('{"plaintext": "a"}', "text/plain", 415, "unsupported_media_type"),
        (
            '{"plaintext": "a", "connection_id": "XYZ"}',
            "application/json",
            400,
            "malformed_connection_id",
        ),
        (
            '{"plaintext": "a", "connection_id": "' + "0" * 32 + '"}',
            "application/json",
            404,
            "unknown_connection",
        ),
    ],
)
def test_bad_message_requests_get_json_errors(client, body, content_type, status, code):
    handshake(client)
    response = client.post(MESSAGE, data=body, content_type=content_type)
    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["error"]["code"] == code


def test_handshake_request_fields_are_strict(client):
    for body in (
        {"key_exchange": "psk"},
        {"extended_master_secret": 1},
        {"resume": "xyz"},
        {"nope": 1},
    ):
        response = client.post(HANDSHAKE, json=body)
        assert response.status_code == 400, body
        assert response.get_json()["error"]["code"] == "decode_error"


def test_unknown_paths_and_methods_answer_in_json(client, server):
    for app_client in (client, server):
        missing = app_client.get("/no/such/thing")
        assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
        wrong = app_client.get(MESSAGE)
        assert wrong.status_code == 405
        assert wrong.get_json()["error"]["code"] == "method_not_allowed"


def test_a_body_over_the_limit_is_refused_with_413(server_app):
    server_app.config["MAX_CONTENT_LENGTH"] = 2048
    response = server_app.test_client().post(
        MESSAGE, data=b"{" + b" " * 4096 + b"}", content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "body_too_large"


def test_healthz(client, server):
    assert client.get(HEALTH).get_json()["status"] == "ok"
    health = server.get(HEALTH).get_json()
    assert health["status"] == "ok" and health["certificate"]["subject"] == "CN=server"


def test_a_tampered_record_ends_the_connection_and_its_session(client, server):
    result = handshake(client)
    sent = client.post(MESSAGE, json={"plaintext": "first"}).get_json()["sent"]
    record = bytearray(base64.b64decode(sent["record"]))
    record[-1] ^= 1
    tampered = {
        "connection_id": result["connection_id"],
        "record": base64.b64encode(bytes(record)).decode(),
    }
    refused = server.post(MESSAGE, json=tampered)
    assert refused.status_code == 400
    assert refused.get_json()["error"] == {
        "code": "bad_record_mac",
        "message": "record authentication failed",
    }
    # The connection is now closed on the server, and the session is not resumable (RFC 5246 §7.2.2).
    after = client.post(MESSAGE, json={"plaintext": "second"})
    assert after.status_code == 502 and after.get_json()["error"]["code"] == "unexpected_message"
    # server_svc's unexpected_message ended it for client_svc too: it offers it no more.
    again = client.post(HANDSHAKE, json={"resume": result["session_id"]})
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "unknown_session"


def test_protected_data_appears_in_both_traces_for_the_first_messages_only(client, server):
    result = handshake(client, key_exchange="ecdhe")
    for i in range(6):
        client.post(MESSAGE, json={"plaintext": f"message {i}"})
    server_steps = server.get(path(SESSION, result["connection_id"])).get_json()["trace"]
    client_steps = client.get(path(SESSION, result["connection_id"])).get_json()["trace"]
    server_data = [s for s in server_steps if s["action"].endswith("protected data")]
    client_data = [s for s in client_steps if s["action"].endswith("protected data")]
    # The first two exchanges (open + seal on each side), then the trace stops growing.
    assert [s["action"] for s in server_data] == ["open protected data", "seal protected data"] * 2
    assert [s["action"] for s in client_data] == ["seal protected data", "open protected data"] * 2
    assert server_data[0]["data"]["first_seq"] == 1 and server_data[2]["data"]["first_seq"] == 2
    assert all(s["flight"] == 6 for s in server_data + client_data)


def test_the_binary_records_endpoint_carries_the_same_echo_without_json(client, server):
    from kdf_lib.record import ContentType, split_records

    result = handshake(client, key_exchange="ecdhe")
    client.post(MESSAGE, json={"plaintext": "first, through JSON"})
    # Seal the next record the way client_svc would, with a second in-memory client would be
    # needed; instead take the client's own connection object and send its record raw.
    service = client.application.extensions["client_service"]
    with service.store.update(result["connection_id"]) as entry:
        conn = entry.handshake.connection
    record = conn.seal(b"x" * 20_000)
    answer = server.post(
        path(RECORDS, result["connection_id"]), data=record, content_type=RECORDS_MEDIA_TYPE
    )
    assert answer.status_code == 200
    assert answer.mimetype == RECORDS_MEDIA_TYPE
    assert answer.headers["TLS-Received-Seq"] == "2"
    assert answer.headers["TLS-Received-Records"] == "2"
    reply = conn.open(answer.get_data())
    assert reply.endswith(b"x" * 20_000)
    assert all(
        h.content_type == ContentType.application_data for h, _ in split_records(answer.get_data())
    )
    wrong_type = server.post(
        path(RECORDS, result["connection_id"]), data=record, content_type="text/plain"
    )
    assert wrong_type.status_code == 415
    replayed = server.post(
        path(RECORDS, result["connection_id"]), data=record, content_type=RECORDS_MEDIA_TYPE
    )
    assert replayed.status_code == 400 and replayed.get_json()["error"]["code"] == "bad_record_mac"


@pytest.mark.parametrize(
    "suite", ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA256"]
)
def test_idle_connections_keep_no_cipher_objects_on_either_side(client, server_app, suite):
    # Each keyed AEAD object holds OpenSSL state (about 2.4 KB); a server with thousands of
    # idle connections must not keep them between messages (docs/performance.md, memory).
    answer = handshake(client, cipher_suite=suite)
    connection_id = answer["connection_id"]
    server_store = server_app.extensions["server_service"].store
    client_store = client.application.extensions["client_service"].store

    def layers():
        with server_store.update(connection_id) as server_entry:
            server_conn = server_entry.handshake.connection
        with client_store.update(connection_id) as entry:
            client_conn = entry.handshake.connection
        return [server_conn.writer, server_conn.reader, client_conn.writer, client_conn.reader]

    def idle(layer):
        return layer._aead is None and layer._hmac is None and layer._aes is None

    assert all(idle(layer) for layer in layers())
    for text in ("one", "two"):
        response = client.post(MESSAGE, json={"connection_id": connection_id, "plaintext": text})
        assert response.status_code == 200, response.get_json()
        assert all(idle(layer) for layer in layers())


def test_client_svc_keeps_only_what_an_established_connection_needs(client, server):
    # Memory per connection: the transcript (its hash stays), the key schedule, the server's
    # certificate objects go once the handshake is over; the exchanges are kept compressed.
    # What GET /sessions shows must not change.
    answer = handshake(client, key_exchange="ecdhe")
    connection_id = answer["connection_id"]
    with client.application.extensions["client_service"].store.update(connection_id) as entry:
        machine = entry.handshake
    assert machine.transcript == b"" and machine._schedule is None
    assert machine._leaf is None and machine._ske is None
    assert entry.exchanges == [] and entry._frozen_exchanges is not None
    # The step trace is kept compressed, and without the hex copies of the secrets that its
    # steps carried (REVEAL_SECRETS is off): nothing secret lingers for the connection's TTL.
    assert machine.trace.steps == []
    frozen = zlib.decompress(machine.trace._frozen).decode()
    secrets = machine.connection.reveal_secrets()
    assert secrets["master_secret"] not in frozen and secrets["key_block"] not in frozen
    assert '"secrets"' not in frozen
    view = client.get(path(SESSION, connection_id)).get_json()
    # Both sides hashed the same transcript (the server's came from its own full copy).
    server_view = server.get(path(SESSION, connection_id)).get_json()
    assert view["transcript_sha256"] == server_view["transcript_sha256"]
    assert [e["request"]["path"] for e in view["exchanges"]] == [
        HELLO,
        FINISH,
    ]
    assert view["fingerprints"] == answer["fingerprints"]
    assert [s["action"] for s in view["trace"]] == [
        s["action"] for s in answer["trace"] if s["actor"] == "client"
    ]
    # And the connection still carries messages.
    sent = client.post(MESSAGE, json={"connection_id": connection_id, "plaintext": "hi"})
    assert sent.status_code == 200, sent.get_json()
