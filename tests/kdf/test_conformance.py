"""Where the state machines and docs/protocol.md must say the same (issue 13 §1): alerts on a
dead connection, unsolicited extensions on resumption, server_name matching, and one failure
state for a connection that a bad record ended."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.pair import client_config, connect
from helpers.pki import server_config

from kdf_lib import kex
from kdf_lib.errors import BadRecordMac, DecodeError, IllegalParameter, UnexpectedMessage
from kdf_lib.handshake import (
    ClientHandshake,
    ClientState,
    ServerHandshake,
    ServerState,
    Session,
)
from kdf_lib.kex import NamedGroup
from kdf_lib.messages import ClientExtensions, ClientHello, ServerKeyExchange

ECDHE = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def _resuming_hello(session: Session, **extensions: object) -> ClientHello:
    return ClientHello(
        bytes(range(32)),
        (session.suite,),
        dataclasses.replace(
            ClientExtensions(extended_master_secret=True, server_name="server"), **extensions
        ),
        session.session_id,
    )


@pytest.mark.parametrize("first", ["bad_certificate", "close_notify"])
def test_an_alert_after_the_handshake_ended_is_unexpected_message(first):
    server = ServerHandshake(server_config())
    server.receive_client_hello(ClientHandshake(client_config(ECDHE)).client_hello())
    server.receive_alert(first)
    assert server.state is ServerState.FAILED
    with pytest.raises(UnexpectedMessage):
        server.receive_alert("decode_error")
    # The alert that ended it stays the one reported.
    assert server.error is not None and server.error.code == (
        first if first != "close_notify" else "unexpected_message"
    )


def test_an_alert_on_a_connection_closed_by_a_bad_record_is_unexpected_message():
    pair = connect(ECDHE)
    with pytest.raises(BadRecordMac):
        pair.server_conn.open(b"\x17\x03\x03\x00\x20" + bytes(32))
    with pytest.raises(UnexpectedMessage):
        pair.server.receive_alert("close_notify")
    with pytest.raises(UnexpectedMessage):
        pair.server.receive_alert("bad_record_mac")


def test_an_alert_on_a_connection_closed_by_close_notify_is_unexpected_message():
    pair = connect(ECDHE)
    pair.server.receive_alert("close_notify")
    assert pair.server.failure is None  # closed, not failed: the session stays resumable
    with pytest.raises(UnexpectedMessage):
        pair.server.receive_alert("close_notify")


@pytest.mark.parametrize("side", ["client", "server"])
def test_a_record_that_does_not_open_fails_the_machine_with_its_alert(side):
    pair = connect(ECDHE)
    machine, conn = (
        (pair.client, pair.client_conn) if side == "client" else (pair.server, pair.server_conn)
    )
    with pytest.raises(BadRecordMac):
        conn.open(b"\x17\x03\x03\x00\x20" + bytes(32))
    summary = machine.summary()
    assert summary["state"] == "failed"
    assert summary["error"] == "bad_record_mac"
    assert summary["closed"] is True
    assert machine.failure == "bad_record_mac"
    assert summary["trace"][-1]["kind"] == "abort"
    assert summary["trace"][-1]["data"]["alert"] == "bad_record_mac"


def test_the_failure_survives_saving_and_restoring():
    pair = connect(ECDHE)
    with pytest.raises(BadRecordMac):
        pair.server_conn.open(b"\x17\x03\x03\x00\x20" + bytes(32))
    restored = ServerHandshake.from_state(pair.server.to_state(), server_config())
    assert restored.state is ServerState.FAILED
    assert restored.error is not None and restored.error.code == "bad_record_mac"


def test_a_connection_restored_established_fails_its_machine_too():
    pair = connect(ECDHE)
    restored = ServerHandshake.from_state(pair.server.to_state(), server_config())
    assert restored.connection is not None
    with pytest.raises(BadRecordMac):
        restored.connection.open(b"\x17\x03\x03\x00\x20" + bytes(32))
    assert restored.state is ServerState.FAILED
    assert restored.failure == "bad_record_mac"


def test_a_resumed_server_hello_has_no_point_formats_when_the_client_offered_no_groups():
    sessions: dict[bytes, Session] = {}
    full = connect(ECDHE, sessions=sessions)
    session = full.client.session
    assert session is not None
    server = ServerHandshake(server_config(), lookup_session=sessions.get)
    flight = server.receive_client_hello(_resuming_hello(session, supported_groups=()))
    assert flight.resumed
    assert flight.server_hello.extensions.ec_point_formats is False
    # With groups offered the resumed ServerHello answers them, as a full one does.
    server = ServerHandshake(server_config(), lookup_session=sessions.get)
    flight = server.receive_client_hello(_resuming_hello(session))
    assert flight.resumed and flight.server_hello.extensions.ec_point_formats is True


def test_a_client_that_offers_no_groups_resumes_an_ecdhe_session():
    sessions: dict[bytes, Session] = {}
    full = connect(ECDHE, sessions=sessions)
    config = dataclasses.replace(client_config(ECDHE), groups=())
    client = ClientHandshake(config, resume=full.client.session)
    server = ServerHandshake(server_config(), lookup_session=sessions.get)
    hello = client.client_hello()
    assert hello.extensions.supported_groups == ()
    finish = client.receive_server_flight(server.receive_client_hello(hello))
    server.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    assert client.state is ClientState.ESTABLISHED and server.state is ServerState.ESTABLISHED
    assert client.connection is not None and client.connection.resumed


@pytest.mark.parametrize(
    ("offered", "resumed"), [("SERVER", True), ("Server", True), ("other", False)]
)
def test_server_name_matches_for_resumption_ignoring_ascii_case(offered, resumed):
    # RFC 6066 §3 host names are DNS names, which compare case-insensitively (RFC 4343).
    sessions: dict[bytes, Session] = {}
    full = connect(ECDHE, sessions=sessions)
    assert full.client.session is not None and full.client.session.server_name == "server"
    server = ServerHandshake(server_config(), lookup_session=sessions.get)
    flight = server.receive_client_hello(_resuming_hello(full.client.session, server_name=offered))
    assert flight.resumed is resumed


CURVES = [g for g in NamedGroup if not kex.is_ffdhe(g)]


@pytest.mark.parametrize("group", CURVES, ids=[g.name for g in CURVES])
def test_an_empty_point_is_a_decode_error_for_every_group(group):
    me = kex.generate_ephemeral_key(group)
    with pytest.raises(DecodeError):
        kex.ecdh_shared_secret(me, b"")


def test_an_empty_server_key_exchange_point_is_refused_by_the_codec():
    with pytest.raises(DecodeError):
        ServerKeyExchange.from_json(
            {
                "named_curve": "secp256r1",
                "public_key": "",
                "signature_algorithm": "rsa_pkcs1_sha256",
                "signature": "AAAA",
            }
        )


@pytest.mark.parametrize("prefix", [b"\x02", b"\x03", b"\x00", b"\x05"])
@pytest.mark.parametrize("length", [1, 33, 65, 200])
def test_a_nist_point_in_another_format_is_illegal_parameter_whatever_its_length(prefix, length):
    # The format byte is judged first (RFC 8422 §5.1.2: only uncompressed is negotiated).
    me = kex.generate_ephemeral_key(NamedGroup.secp256r1)
    with pytest.raises(IllegalParameter):
        kex.ecdh_shared_secret(me, prefix + bytes(length - 1))
