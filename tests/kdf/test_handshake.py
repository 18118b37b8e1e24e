"""The client and server state machines driven against each other in memory (RFC 5246 §7.3)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from helpers.pair import client_config, connect
from helpers.pki import server_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdf_lib.errors import (
    BadRecordMac,
    CertificateExpired,
    DecodeError,
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    LocalProtocolError,
    TLSError,
    UnexpectedMessage,
    UnsupportedExtension,
)
from kdf_lib.handshake import (
    ClientHandshake,
    ClientState,
    ServerHandshake,
    ServerState,
    Session,
)
from kdf_lib.messages import ClientHello, ClientKeyExchange, ServerExtensions, ServerFlight
from kdf_lib.role import Role
from kdf_lib.suites import SUITES
from kdf_lib.tickets import TicketKey, TicketKeys
from kdf_lib.trace import StepKind, Trace, fingerprint, fingerprint_key, keyed_fingerprint


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_full_and_resumed_handshakes_agree_for_every_suite(suite):
    sessions = {}
    full = connect(suite, sessions=sessions)
    assert full.client.transcript == full.server.transcript
    assert full.client_conn.fingerprints() == full.server_conn.fingerprints()
    assert full.client.state is ClientState.ESTABLISHED
    assert full.server.state is ServerState.ESTABLISHED
    resumed = connect(suite, resume=full.client.session, sessions=sessions)
    assert resumed.client_conn.resumed and resumed.server_conn.resumed
    assert resumed.client_conn.fingerprints() == resumed.server_conn.fingerprints()
    assert (
        resumed.client_conn.fingerprints()["master_secret"]
        == full.client_conn.fingerprints()["master_secret"]
    )
    assert (
        resumed.client_conn.fingerprints()["key_block"]
        != full.client_conn.fingerprints()["key_block"]
    )
    # Application data flows both ways, starting at sequence number 1 after Finished.
    assert resumed.client_conn.writer.seq == 1
    assert resumed.server_conn.open(resumed.client_conn.seal(b"ping")) == b"ping"
    assert resumed.client_conn.open(resumed.server_conn.seal(b"pong")) == b"pong"


def test_without_extensions_the_classic_master_secret_is_used():
    pair = connect("TLS_RSA_WITH_AES_128_CBC_SHA256", ems=False, etm=False)
    assert not pair.client_conn.extended_master_secret
    assert not pair.client_conn.encrypt_then_mac
    kinds = [s.kind for s in pair.client.trace.steps]
    assert StepKind.MASTER_SECRET in kinds and StepKind.EXTENDED_MASTER_SECRET not in kinds


#: Steps only a handshake with client authentication takes (tests/kdf/test_mtls.py).
MTLS_STEPS = {
    StepKind.SEND_CERTIFICATE_REQUEST,
    StepKind.RECEIVE_CERTIFICATE_REQUEST,
    StepKind.SEND_CLIENT_CERTIFICATE,
    StepKind.VERIFY_CLIENT_CERTIFICATE,
    StepKind.SEND_CERTIFICATE_VERIFY,
    StepKind.VERIFY_CERTIFICATE_VERIFY,
}


def test_every_step_carries_a_stable_kind_in_the_documented_order_of_fields():
    seen: set[StepKind] = set()
    pairs = [connect("TLS_RSA_WITH_AES_128_CBC_SHA256", ems=False)]
    for suite in (
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    ):
        sessions: dict[bytes, Session] = {}
        full = connect(suite, sessions=sessions)
        pairs += [full, connect(suite, resume=full.client.session, sessions=sessions)]
    keys = TicketKeys(TicketKey.generate())
    with_ticket = connect(tickets=keys)
    pairs += [with_ticket, connect(tickets=keys, resume=with_ticket.client.session)]
    for pair in pairs:
        assert pair.server_conn.open(pair.client_conn.seal(b"ping")) == b"ping"
        assert pair.client_conn.open(pair.server_conn.seal(b"pong")) == b"pong"
        for machine in (pair.client, pair.server):
            for step in machine.summary()["trace"]:
                fields = ["actor", "flight", "kind", "action", "purpose", "data", "elapsed_ms"]
                assert list(step) == fields
                seen.add(StepKind(step["kind"]))
    client, server = _start()
    server.receive_client_hello(client.client_hello())
    server.receive_alert("unknown_ca")
    assert server.trace.steps[-1].kind is StepKind.RECEIVE_ALERT
    refused = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    with pytest.raises(UnexpectedMessage):
        refused.receive_client_finish(None, b"")
    assert refused.trace.steps[-1].kind is StepKind.ABORT
    seen |= {StepKind.RECEIVE_ALERT, StepKind.ABORT}
    # Not a handshake's: the shared state store's (tests/services/test_redis_store.py).
    assert seen | {StepKind.STATE_CONFLICT} | MTLS_STEPS == set(StepKind)


def _start(suite="TLS_RSA_WITH_AES_256_CBC_SHA256", **kw):
    client = ClientHandshake(client_config(suite, **kw), trace=Trace(Role.CLIENT))
    server = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    return client, server


def test_an_edited_client_hello_fails_at_finished_on_the_server():
    # Downgrade in transit: the attacker drops encrypt_then_mac from the ClientHello.
    client, server = _start()
    hello = client.client_hello()
    edited = dataclasses.replace(
        hello, extensions=dataclasses.replace(hello.extensions, encrypt_then_mac=False)
    )
    flight = server.receive_client_hello(edited)
    finish = client.receive_server_flight(flight)
    with pytest.raises((BadRecordMac, DecryptError)):
        server.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    assert server.state is ServerState.FAILED and server.connection is None


def test_an_edited_server_random_fails_at_finished():
    client, server = _start("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    flight = server.receive_client_hello(client.client_hello())
    edited = dataclasses.replace(
        flight, server_hello=dataclasses.replace(flight.server_hello, random=b"\x00" * 32)
    )
    # With ECDHE the signature over the randoms catches it before any secret is computed.
    with pytest.raises(DecryptError):
        client.receive_server_flight(edited)
    assert client.state is ClientState.FAILED


def test_a_server_hello_edited_to_drop_ems_fails_on_the_server():
    client, server = _start()
    flight = server.receive_client_hello(client.client_hello())
    edited = dataclasses.replace(
        flight,
        server_hello=dataclasses.replace(
            flight.server_hello,
            extensions=ServerExtensions(extended_master_secret=False, encrypt_then_mac=True),
        ),
    )
    finish = client.receive_server_flight(edited)
    with pytest.raises((BadRecordMac, DecryptError)):
        server.receive_client_finish(finish.client_key_exchange, finish.finished_record)


def test_a_suite_that_was_not_offered_is_refused_by_the_client():
    client, server = _start("TLS_RSA_WITH_AES_256_CBC_SHA256")
    flight = server.receive_client_hello(client.client_hello())
    edited = dataclasses.replace(
        flight,
        server_hello=dataclasses.replace(
            flight.server_hello, cipher_suite=SUITES["TLS_RSA_WITH_AES_128_CBC_SHA"]
        ),
    )
    with pytest.raises(IllegalParameter):
        client.receive_server_flight(edited)


def test_an_unsolicited_extension_is_refused():
    client, server = _start(ems=False)
    flight = server.receive_client_hello(client.client_hello())
    edited = dataclasses.replace(
        flight,
        server_hello=dataclasses.replace(
            flight.server_hello, extensions=ServerExtensions(extended_master_secret=True)
        ),
    )
    with pytest.raises(UnsupportedExtension):
        client.receive_server_flight(edited)


def test_missing_server_key_exchange_for_ecdhe_is_unexpected():
    client, server = _start("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    flight = server.receive_client_hello(client.client_hello())
    with pytest.raises(UnexpectedMessage):
        client.receive_server_flight(dataclasses.replace(flight, server_key_exchange=None))


def test_a_tampered_server_key_exchange_signature_aborts_the_client():
    client, server = _start("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    flight = server.receive_client_hello(client.client_hello())
    ske = flight.server_key_exchange
    assert ske is not None
    bad = dataclasses.replace(ske, signature=ske.signature[:-1] + bytes([ske.signature[-1] ^ 1]))
    with pytest.raises(DecryptError):
        client.receive_server_flight(dataclasses.replace(flight, server_key_exchange=bad))


def test_a_server_key_exchange_replayed_from_another_handshake_aborts_the_client():
    old_client, old_server = _start("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    old = old_server.receive_client_hello(old_client.client_hello())
    client, server = _start("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    flight = server.receive_client_hello(client.client_hello())
    with pytest.raises(DecryptError):
        client.receive_server_flight(
            dataclasses.replace(flight, server_key_exchange=old.server_key_exchange)
        )


def test_an_expired_certificate_aborts_before_the_key_exchange():
    client = ClientHandshake(
        client_config(),
        now=lambda: datetime.now(UTC) + timedelta(days=3650),
        trace=Trace(Role.CLIENT),
    )
    server = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    with pytest.raises(CertificateExpired):
        client.receive_server_flight(server.receive_client_hello(client.client_hello()))
    assert client.state is ClientState.FAILED


@pytest.mark.parametrize("mutation", ["flip", "short", "long", "other_label"])
def test_a_bad_client_finished_is_refused(mutation):
    client, server = _start("TLS_RSA_WITH_AES_128_GCM_SHA256")
    flight = server.receive_client_hello(client.client_hello())
    finish = client.receive_server_flight(flight)
    schedule = client._schedule
    assert schedule is not None
    from kdf_lib.messages import Finished
    from kdf_lib.record import ContentType, RecordProtection

    keys = schedule.keys
    writer = RecordProtection(
        keys.suite, keys.client_write_mac_key, keys.client_write_key, keys.client_write_iv
    )
    verify = schedule.verify_data(
        Role.CLIENT, client.transcript[: -len(Finished(b"x" * 12).encode())]
    )
    body = {
        "flip": Finished(bytes([verify[0] ^ 1]) + verify[1:]).encode(),
        "short": b"\x14\x00\x00\x0b" + verify[:11],
        "long": b"\x14\x00\x00\x0d" + verify + b"\x00",
        "other_label": Finished(
            schedule.verify_data(
                Role.SERVER, client.transcript[: -len(Finished(b"x" * 12).encode())]
            )
        ).encode(),
    }[mutation]
    record = writer.seal(ContentType.handshake, body)
    with pytest.raises((DecryptError, DecodeError)):
        server.receive_client_finish(finish.client_key_exchange, record)
    assert server.state is ServerState.FAILED


def test_finish_twice_and_finish_before_hello_are_unexpected():
    server = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    with pytest.raises(UnexpectedMessage):
        server.receive_client_finish(None, b"\x16\x03\x03\x00\x00")
    assert server.state is ServerState.FAILED
    pair = connect()
    with pytest.raises(UnexpectedMessage):
        pair.server.receive_client_finish(None, b"\x16\x03\x03\x00\x00")


def test_a_failed_machine_accepts_nothing_more():
    client, server = _start()
    hello = client.client_hello()
    # The caller's mistake is a local error, not the peer's unexpected_message; it fails
    # the machine all the same.
    with pytest.raises(LocalProtocolError):
        client.client_hello()
    assert client.state is ClientState.FAILED
    with pytest.raises(UnexpectedMessage):
        client.receive_server_finished(b"")
    flight = server.receive_client_hello(hello)
    with pytest.raises(UnexpectedMessage):
        client.receive_server_flight(flight)


def test_resumption_with_ems_session_but_no_ems_in_hello_is_aborted():
    sessions = {}
    full = connect(ems=True, sessions=sessions)
    session = full.client.session
    assert session is not None
    client = ClientHandshake(client_config(ems=False), resume=session, trace=Trace(Role.CLIENT))
    server = ServerHandshake(server_config(), lookup_session=sessions.get, trace=Trace(Role.SERVER))
    with pytest.raises(HandshakeFailure):
        server.receive_client_hello(client.client_hello())


def test_a_non_ems_session_is_not_resumed_by_an_ems_hello():
    sessions = {}
    full = connect(ems=False, sessions=sessions)
    session = full.client.session
    assert session is not None
    client = ClientHandshake(client_config(ems=True), resume=session, trace=Trace(Role.CLIENT))
    server = ServerHandshake(server_config(), lookup_session=sessions.get, trace=Trace(Role.SERVER))
    flight = server.receive_client_hello(client.client_hello())
    assert not flight.resumed  # RFC 7627 §5.3: a full handshake instead


def test_an_unknown_session_id_gives_a_full_handshake():
    client = ClientHandshake(client_config(), trace=Trace(Role.CLIENT))
    server = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    hello = dataclasses.replace(client.client_hello(), session_id=b"\x01" * 32)
    flight = server.receive_client_hello(hello)
    assert not flight.resumed and flight.server_hello.session_id != hello.session_id


def test_application_records_are_refused_after_an_integrity_failure():
    pair = connect("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256")
    record = pair.client_conn.seal(b"one")
    with pytest.raises(BadRecordMac):
        pair.server_conn.open(record[:-1] + bytes([record[-1] ^ 1]))
    with pytest.raises(UnexpectedMessage):
        pair.server_conn.open(pair.client_conn.seal(b"two"))


def test_replayed_reflected_and_spliced_records_are_rejected():
    pair, other = connect(), connect()
    record = pair.client_conn.seal(b"once")
    assert pair.server_conn.open(record) == b"once"
    with pytest.raises(BadRecordMac):
        pair.server_conn.open(record)  # replay
    pair = connect()
    with pytest.raises(BadRecordMac):
        pair.server_conn.open(pair.server_conn.seal(b"mirror"))  # reflection
    pair = connect()
    with pytest.raises(BadRecordMac):
        pair.server_conn.open(other.client_conn.seal(b"elsewhere"))  # splice


def test_repr_of_machines_and_connections_shows_no_secrets():
    pair = connect("TLS_RSA_WITH_AES_128_CBC_SHA256")
    secrets = pair.client_conn.reveal_secrets()
    for obj in (
        pair.client,
        pair.server,
        pair.client_conn,
        pair.server.session,
        pair.client.session,
    ):
        text = repr(obj) + repr(vars(obj)) if hasattr(obj, "__dict__") else repr(obj)
        for value in secrets.values():
            if value:
                assert value not in text


def test_summary_shows_fingerprints_unless_secrets_are_revealed():
    pair = connect()
    hidden = str(pair.server.summary())
    shown = pair.server.summary(reveal_secrets=True)
    master = shown["secrets"]["master_secret"]
    assert master not in hidden
    assert pair.server.summary()["fingerprints"] == pair.client.summary()["fingerprints"]


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_a_key_under_16_bytes_is_published_only_as_a_keyed_fingerprint(suite):
    """A 4-byte GCM salt's SHA-256 is reversed by trying all 2^32 values; 12-byte ChaCha20
    nonce masks and verify_data fall under the same rule (docs/protocol.md §3.8)."""
    pair = connect(suite)
    client, server = pair.client.summary(), pair.server.summary()
    secrets = pair.client.summary(reveal_secrets=True)["secrets"]
    key = fingerprint_key(
        bytes.fromhex(secrets["master_secret"]),
        pair.client_conn.client_random,
        pair.client_conn.server_random,
        SUITES[suite].prf_hash,
    )
    assert client["key_block_layout"] == server["key_block_layout"]
    split = next(s for s in server["trace"] if s["kind"] == "key_split")["data"]
    for part in client["key_block_layout"]:
        value = bytes.fromhex(secrets[part["name"]])
        if len(value) >= 16:
            assert (part["sha256"], part["hmac"]) == (hashlib.sha256(value).hexdigest(), None)
        elif value:
            assert (part["sha256"], part["hmac"]) == (None, keyed_fingerprint(key, value))
            assert split[f"{part['name']}_hmac"] == part["hmac"]
            assert f"{part['name']}_sha256" not in split
            assert hashlib.sha256(value).hexdigest() not in json.dumps([client, server])
    sent = next(s for s in client["trace"] if s["kind"] == "send_finished")["data"]
    got = next(s for s in server["trace"] if s["kind"] == "verify_finished")["data"]
    assert sent["verify_data_hmac"] == got["verify_data_hmac"]
    assert sent["verify_data_length"] == 12 and "verify_data" not in sent


def test_a_plain_fingerprint_of_a_short_value_is_refused():
    with pytest.raises(ValueError, match="keyed_fingerprint"):
        fingerprint(bytes(15))
    assert fingerprint(bytes(16)) == hashlib.sha256(bytes(16)).hexdigest()


# -- random message sequences --------------------------------------------------------------

_server_calls = st.one_of(
    st.tuples(st.just("hello"), st.sampled_from(["valid", "empty_suites", "other"])),
    st.tuples(st.just("finish"), st.booleans(), st.binary(max_size=64)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_server_calls, min_size=1, max_size=5))
def test_the_server_machine_only_ever_raises_protocol_errors(calls):
    server = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    client = ClientHandshake(
        client_config("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), trace=Trace(Role.CLIENT)
    )
    hello = client.client_hello()
    failed = False
    for call in calls:
        try:
            if call[0] == "hello":
                msg = (
                    hello if call[1] == "valid" else ClientHello(b"\x01" * 32, (), hello.extensions)
                )
                server.receive_client_hello(msg)
            else:
                cke = ClientKeyExchange(public_key=call[2] or b"\x00") if call[1] else None
                server.receive_client_finish(cke, call[2])
        except TLSError:
            failed = True
            assert server.state is ServerState.FAILED
        else:
            assert not failed, "a failed machine accepted a message"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(["hello", "flight", "finished", "junk_finished"]), min_size=1, max_size=5
    )
)
def test_the_client_machine_only_ever_raises_local_or_remote_protocol_errors(calls):
    client = ClientHandshake(
        client_config("TLS_RSA_WITH_AES_128_CBC_SHA256"), trace=Trace(Role.CLIENT)
    )
    server = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    flight: ServerFlight | None = None
    failed = False
    for call in calls:
        try:
            if call == "hello":
                flight = server.receive_client_hello(client.client_hello())
            elif call == "flight":
                if flight is None:
                    continue  # nothing has been sent yet, so there is nothing to deliver
                client.receive_server_flight(flight)
            elif call == "finished":
                client.receive_server_finished(b"\x16\x03\x03\x00\x10" + b"\x00" * 16)
            else:
                client.receive_server_finished(b"junk")
        except LocalProtocolError:
            # Only the caller's own call can be its mistake: a second ClientHello.
            assert call == "hello"
            failed = True
            assert client.state is ClientState.FAILED
        except TLSError:
            failed = True
            assert client.state is ClientState.FAILED
        else:
            assert not failed, "a failed machine accepted a message"


def test_compact_keeps_the_summary_and_drops_what_an_established_connection_no_longer_needs():
    pair = connect("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    before = pair.server.summary()
    secrets = pair.server_conn.reveal_secrets()
    pair.server.compact(reveal_secrets=False)
    after = pair.server.summary()
    assert after == before
    assert pair.server.transcript == b"" and pair.server._schedule is None
    # No cipher objects (OpenSSL state, about 2.4 KB per AEAD direction) while it sits idle.
    for layer in (pair.server_conn.writer, pair.server_conn.reader):
        assert layer._aead is None and layer._hmac is None and layer._aes is None
    frozen = zlib.decompress(pair.server.trace._frozen).decode()
    assert secrets["master_secret"] not in frozen and secrets["key_block"] not in frozen
    # The connection goes on working after compaction, and new steps still join the trace.
    assert pair.server_conn.open(pair.client_conn.seal(b"still here")) == b"still here"
    assert pair.server.summary()["trace"][-1]["kind"] == "open_data"


def test_a_trace_frozen_with_its_secrets_shows_them_only_when_asked():
    pair = connect("TLS_RSA_WITH_AES_128_CBC_SHA256")
    master = pair.client_conn.reveal_secrets()["master_secret"]
    pair.client.compact(reveal_secrets=True)
    revealed = json.dumps(pair.client.summary(reveal_secrets=True)["trace"])
    hidden = json.dumps(pair.client.summary(reveal_secrets=False)["trace"])
    assert master in revealed
    assert master not in hidden and '"secrets"' not in hidden
    # Twice: rendering without secrets must not have changed what is kept.
    assert master in json.dumps(pair.client.summary(reveal_secrets=True)["trace"])


def test_only_an_established_handshake_can_be_compacted():
    server = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    with pytest.raises(LocalProtocolError):
        server.compact()


def test_sealing_on_a_closed_connection_is_a_local_error_and_opening_a_remote_one():
    pair = connect()
    record = pair.client.connection.seal(b"before")
    pair.server.connection.fail("close_notify")
    with pytest.raises(LocalProtocolError):
        pair.server.connection.seal(b"after")
    with pytest.raises(UnexpectedMessage) as remote:
        pair.server.connection.open(record)
    assert not isinstance(remote.value, LocalProtocolError)
    assert remote.value.status == 409


def test_a_received_alert_ends_the_machine_as_rfc_5246_7_2_says():
    # Fatal: the handshake fails with the peer's alert as its error; nothing more is accepted.
    client, server = (
        ClientHandshake(client_config(), trace=Trace(Role.CLIENT)),
        ServerHandshake(server_config(), trace=Trace(Role.SERVER)),
    )
    server.receive_client_hello(client.client_hello())
    server.receive_alert("unknown_ca")
    assert server.state is ServerState.FAILED and server.error.code == "unknown_ca"
    with pytest.raises(TLSError):
        server.receive_client_finish(ClientKeyExchange(b"\x00" * 256), b"")
    # close_notify before Finished ends the handshake too; after it, it only closes.
    half_open = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    half_open.receive_client_hello(
        ClientHandshake(client_config(), trace=Trace(Role.CLIENT)).client_hello()
    )
    half_open.receive_alert("close_notify")
    assert half_open.state is ServerState.FAILED
    pair = connect("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    pair.server.receive_alert("close_notify")
    assert pair.server.state is ServerState.ESTABLISHED and pair.server_conn.closed
    with pytest.raises(UnexpectedMessage):
        pair.server_conn.open(pair.client_conn.seal(b"after close_notify"))
    # Alerts the lab does not define are a caller error, not a state change.
    other = connect("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    with pytest.raises(ValueError):
        other.server.receive_alert("user_canceled")
    assert other.server.state is ServerState.ESTABLISHED and not other.server_conn.closed


@pytest.mark.parametrize(
    ("machine", "states", "start"),
    [
        (ClientHandshake, ClientState, ClientState.START),
        (ServerHandshake, ServerState, ServerState.WAIT_CLIENT_HELLO),
    ],
)
def test_every_state_but_failed_is_reached_through_the_transition_table(machine, states, start):
    table = machine._table
    targets = {rule.next_state for rule in table.values()}
    targets |= {state for rule in table.values() for _, state in rule.branches}
    assert targets | {start, states.FAILED} == set(states)
    assert not any(state in (states.ESTABLISHED, states.FAILED) for state, _ in table)


def test_failure_names_the_error_that_ended_the_handshake_or_its_connection():
    pair = connect()
    assert pair.server.failure is None and pair.client.failure is None
    pair.server.receive_alert("close_notify")
    assert pair.server.failure is None  # a close_notify keeps the session resumable
    other = connect()
    with pytest.raises(BadRecordMac):
        other.server_conn.open(b"\x17\x03\x03\x00\x20" + bytes(32))
    assert other.server.failure == "bad_record_mac"
    client, server = _start()
    server.receive_client_hello(client.client_hello())
    with pytest.raises(UnexpectedMessage):
        server.receive_client_finish(None, b"\x16\x03\x03\x00\x00")
    assert server.failure == "unexpected_message"


def test_a_close_notify_during_a_resumption_keeps_the_session_resumable():
    sessions: dict[bytes, Session] = {}
    full = connect(sessions=sessions)
    client = ClientHandshake(client_config(), resume=full.client.session, trace=Trace("client"))
    server = ServerHandshake(server_config(), lookup_session=sessions.get, trace=Trace("server"))
    assert server.receive_client_hello(client.client_hello()).resumed
    server.receive_alert("close_notify")
    assert server.state is ServerState.FAILED  # the handshake is over ...
    assert server.failure is None  # ... but by no error: RFC 5246 §7.2.1
    with pytest.raises(UnexpectedMessage):  # nothing follows the end, an alert neither
        server.receive_alert("handshake_failure")
    assert server.failure is None  # the first ending stands
