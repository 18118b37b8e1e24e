"""A machine saved between two calls and restored (as another process would) goes on exactly
where it was: the basis of any store outside the process."""

from __future__ import annotations

import json
import time

import pytest
from helpers.pair import client_config, connect
from helpers.pki import server_config

from kdf_lib.errors import BadRecordMac, LocalProtocolError, SequenceExhausted, UnexpectedMessage
from kdf_lib.handshake import ClientHandshake, ServerHandshake, ServerState, Session
from kdf_lib.record import MAX_SEQUENCE
from kdf_lib.role import Role
from kdf_lib.tickets import TicketKey, TicketKeys
from kdf_lib.trace import Trace

SUITES = (
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
)


def restore_server(machine: ServerHandshake, **kw) -> ServerHandshake:
    return ServerHandshake.from_state(machine.to_state(), server_config(), **kw)


@pytest.mark.parametrize("suite", SUITES)
def test_a_server_saved_between_hello_and_finish_completes_the_handshake(suite):
    client = ClientHandshake(client_config(suite), trace=Trace(Role.CLIENT))
    first = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    flight = first.receive_client_hello(client.client_hello())
    finish = client.receive_server_flight(flight)
    # Another replica takes the second request: only the saved bytes travel.
    second = restore_server(first)
    assert second.state is ServerState.WAIT_CLIENT_KEY_EXCHANGE
    reply = second.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    client.receive_server_finished(reply)
    assert client.connection.fingerprints() == second.connection.fingerprints()
    assert second.connection.open(client.connection.seal(b"ping")) == b"ping"
    steps = second.summary()["trace"]
    assert [s["flight"] for s in steps] == sorted(s["flight"] for s in steps)
    assert {2, 4} <= {s["flight"] for s in steps}


def test_a_resumed_server_handshake_saved_after_its_hello_completes():
    keys = TicketKeys(TicketKey.generate())
    sessions: dict[bytes, Session] = {}
    full = connect(SUITES[1], sessions=sessions, tickets=keys)
    for session in (full.client.session, Session(**{**vars(full.client.session), "ticket": None})):
        client = ClientHandshake(
            client_config(SUITES[1], tickets=True), resume=session, trace=Trace(Role.CLIENT)
        )
        server = ServerHandshake(
            server_config(), lookup_session=sessions.get, tickets=keys, trace=Trace(Role.SERVER)
        )
        finish = client.receive_server_flight(server.receive_client_hello(client.client_hello()))
        restored = restore_server(server, tickets=keys)
        assert restored.receive_client_finish(None, finish.finished_record) == b""
        assert restored.connection.resumed and client.connection.resumed
        # Resumed from a ticket, the session is not cached under the ID the client chose.
        assert (restored.session_to_cache is None) == (session.ticket is not None)
        assert restored.connection.open(client.connection.seal(b"again")) == b"again"


@pytest.mark.parametrize("suite", SUITES)
def test_established_connections_go_on_with_their_sequence_numbers(suite):
    pair = connect(suite)
    for _ in range(3):
        pair.server_conn.open(pair.client_conn.seal(b"x"))
        pair.client_conn.open(pair.server_conn.seal(b"y"))
    server = restore_server(pair.server)
    client = ClientHandshake.from_state(pair.client.to_state(), client_config(suite))
    assert server.summary() == pair.server.summary()
    assert client.summary() == pair.client.summary()
    assert (server.connection.writer.seq, server.connection.reader.seq) == (4, 4)
    assert server.connection.open(client.connection.seal(b"later")) == b"later"
    assert client.connection.open(server.connection.seal(b"reply")) == b"reply"
    # The originals, had they gone on too, would have used the same sequence numbers: what
    # the saved state must never allow is two processes sealing with them (the stores' job).
    assert pair.server_conn.writer.seq == 4


def test_a_spent_sequence_space_is_saved_exactly():
    """Once the last sequence number is spent the writer's next is 2^64 (RFC 5246 §6.1: it never
    wraps), past what orjson writes: the state still saves (the stdlib writes it), reads back as
    the same integer, saves again byte for byte the same, and the restored connection still
    refuses to seal."""
    pair = connect(SUITES[1])
    pair.server_conn.writer.seq = MAX_SEQUENCE
    pair.server_conn.seal(b"the last record")
    saved = pair.server.to_state()
    server = ServerHandshake.from_state(saved, server_config())
    assert type(server.connection.writer.seq) is int
    assert server.connection.writer.seq == MAX_SEQUENCE + 1
    assert server.to_state() == saved
    with pytest.raises(SequenceExhausted):
        server.connection.seal(b"one too many")


def test_a_failed_machine_stays_failed_with_its_error():
    pair = connect(SUITES[0])
    with pytest.raises(BadRecordMac):
        pair.server_conn.open(b"\x17\x03\x03\x00\x40" + bytes(64))
    restored = restore_server(pair.server)
    assert restored.failure == "bad_record_mac"
    with pytest.raises(UnexpectedMessage):
        restored.connection.open(pair.client_conn.seal(b"too late"))
    client, server = ClientHandshake(client_config(), trace=Trace(Role.CLIENT)), None
    server = ServerHandshake(server_config(), trace=Trace(Role.SERVER))
    server.receive_client_hello(client.client_hello())
    with pytest.raises(UnexpectedMessage):
        server.receive_client_finish(None, b"\x16\x03\x03\x00\x00")
    failed = restore_server(server)
    assert failed.state is ServerState.FAILED and failed.error.code == "unexpected_message"


def test_the_saved_trace_holds_no_secret_unless_revealed():
    pair = connect(SUITES[1])
    secrets = pair.server_conn.reveal_secrets()

    def saved_steps(state: bytes) -> str:
        # Everything the saved trace holds, secrets included if they are there.
        saved = Trace.from_state(json.loads(state)["trace"])
        return json.dumps(saved.to_json(reveal_secrets=True))

    text = saved_steps(pair.server.to_state())
    assert "verify_finished" in text
    assert not any(value in text for value in secrets.values() if value)
    assert secrets["master_secret"] in saved_steps(pair.server.to_state(reveal_secrets=True))
    # Saved while revealing, then saved without: the secrets are dropped again.
    restored = ServerHandshake.from_state(
        pair.server.to_state(reveal_secrets=True), server_config()
    )
    text = saved_steps(restored.to_state())
    assert not any(value in text for value in secrets.values() if value)


def test_a_restored_trace_goes_on_from_its_last_step():
    pair = connect(SUITES[1])
    saved = pair.server.trace.to_json()
    restored = restore_server(pair.server, trace_clock=time.perf_counter)
    restored.connection.open(pair.client_conn.seal(b"data"))
    steps = restored.summary()["trace"]
    assert steps[: len(saved)] == saved
    assert steps[-1]["kind"] == "open_data"
    assert steps[-1]["elapsed_ms"] >= saved[-1]["elapsed_ms"]


def test_a_client_is_saved_only_between_the_servers_flights():
    client = ClientHandshake(client_config(SUITES[1]), trace=Trace(Role.CLIENT))
    client.client_hello()
    client.state = type(client.state).WAIT_CERTIFICATE  # as inside receive_server_flight
    with pytest.raises(LocalProtocolError):
        client.to_state()


def test_foreign_or_mismatched_state_is_refused():
    pair = connect()
    with pytest.raises(ValueError):
        ServerHandshake.from_state(pair.client.to_state(), server_config())
    data = json.loads(pair.server.to_state())
    data["format"] = 999
    with pytest.raises(ValueError):
        ServerHandshake.from_state(json.dumps(data).encode(), server_config())


def test_records_are_sealed_only_after_their_sequence_numbers_were_persisted():
    pair = connect(SUITES[1])
    first = pair.server_conn.writer.seq  # 1: the Finished had 0
    seen: list[int] = []
    sealed = pair.server_conn.seal_durably(
        [b"one", b"two", b""], lambda: seen.append(pair.server_conn.writer.seq)
    )
    assert seen == [first + 3]  # persisted with all three records' numbers already spent
    assert pair.client_conn.open(sealed) == b"onetwo"
    assert pair.client_conn.reader.seq == first + 3 == pair.server_conn.writer.seq

    def store_down() -> None:
        raise ConnectionError("the store did not take it")

    with pytest.raises(ConnectionError):
        pair.server_conn.seal_durably([b"lost"], store_down)
    # Nothing was sealed, and the number stays spent: the next record has the next one.
    assert pair.server_conn.writer.seq == first + 4
