"""Session tickets (RFC 5077): sealing, the key ring, and resumption through the machines."""

from __future__ import annotations

import dataclasses
import time

import pytest
from helpers.pair import client_config, connect
from helpers.pki import SERVER_NAME, server_config

from kdf_lib.errors import UnexpectedMessage, UnsupportedExtension
from kdf_lib.handshake import ClientHandshake, ServerHandshake
from kdf_lib.messages import (
    ClientExtensions,
    NewSessionTicket,
    ServerExtensions,
    ServerFlight,
)
from kdf_lib.suites import SUITES
from kdf_lib.tickets import KEY_NAME_LENGTH, TicketKey, TicketKeys, TicketState
from kdf_lib.trace import StepKind, Trace
from kdf_lib.wire import HandshakeType, Reader

SUITE = SUITES["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
MASTER = bytes(range(48))


def state(issued: int = 1_000_000) -> TicketState:
    return TicketState(SUITE, MASTER, True, SERVER_NAME, issued)


def ring(now: float = 1_000_000.0, **kw) -> TicketKeys:
    return TicketKeys(TicketKey.generate(), clock=lambda: now, **kw)


def test_a_ticket_has_rfc_5077_layout_and_opens_to_the_state_it_sealed():
    keys = ring()
    ticket = keys.seal(state())
    reader = Reader(ticket)
    assert reader.take(KEY_NAME_LENGTH) == keys.current.name
    reader.take(16)  # IV
    encrypted = reader.take(reader.uint(2))
    assert len(encrypted) % 16 == 0
    assert len(reader.take(32)) == 32  # HMAC-SHA256
    reader.finish()
    assert MASTER not in ticket  # the state travels encrypted
    assert keys.open(ticket) == state()


def test_every_damaged_or_foreign_ticket_is_refused_the_same_way():
    keys = ring()
    ticket = keys.seal(state())
    for position in (0, KEY_NAME_LENGTH, KEY_NAME_LENGTH + 16 + 2, len(ticket) - 1):
        damaged = bytearray(ticket)
        damaged[position] ^= 1
        assert keys.open(bytes(damaged)) is None
    assert keys.open(ticket[:-1]) is None
    assert keys.open(b"") is None
    assert ring().open(ticket) is None  # another ring's key


def test_a_rotated_ring_still_opens_tickets_of_its_previous_key_but_seals_with_the_new_one():
    old = ring()
    ticket = old.seal(state())
    new = old.rotated(TicketKey.generate(), keep=1)
    assert new.open(ticket) == state()
    assert new.seal(state())[:KEY_NAME_LENGTH] == new.current.name != old.current.name
    retired = new.rotated(TicketKey.generate(), keep=1)
    assert retired.open(ticket) is None


def test_a_ticket_expires_after_its_lifetime():
    keys = ring(now=1_000_000.0, lifetime=60)
    ticket = keys.seal(state(issued=1_000_000))
    later = TicketKeys(keys.current, lifetime=60, clock=lambda: 1_000_059.0)
    assert later.open(ticket) is not None
    expired = TicketKeys(keys.current, lifetime=60, clock=lambda: 1_000_060.0)
    assert expired.open(ticket) is None


def test_ticket_keys_never_show_in_a_repr():
    key = TicketKey.generate()
    assert key.aes_key.hex() not in repr(key) and key.mac_key.hex() not in repr(key)
    assert key.aes_key.hex() not in repr(TicketKeys(key))


def test_new_session_ticket_encodes_as_rfc_5077_section_3_3_says():
    message = NewSessionTicket(3600, b"\x01\x02\x03")
    assert message.encode() == bytes([HandshakeType.new_session_ticket, 0, 0, 9]) + (
        b"\x00\x00\x0e\x10" + b"\x00\x03\x01\x02\x03"
    )
    assert NewSessionTicket.from_json(message.to_json()) == message


def test_the_extension_carries_the_ticket_itself_and_is_absent_unless_offered():
    assert b"\x00\x23" not in ClientExtensions().encode()
    assert ClientExtensions(session_ticket=b"").encode().endswith(b"\x00\x23\x00\x00")
    assert (
        ClientExtensions(session_ticket=b"\xaa\xbb").encode().endswith(b"\x00\x23\x00\x02\xaa\xbb")
    )
    assert ServerExtensions(session_ticket=True).encode().endswith(b"\x00\x23\x00\x00")
    assert "session_ticket" not in ClientExtensions().to_json()
    offered = ClientExtensions(session_ticket=b"\xaa")
    assert ClientExtensions.from_json(offered.to_json()) == offered


def test_a_full_handshake_issues_a_ticket_that_resumes_on_another_server_with_the_keys():
    keys = ring(now=time.time())
    full = connect(SUITE, tickets=keys)
    assert full.server.new_session_ticket is not None
    session = full.client.session
    assert session is not None and session.ticket == full.server.new_session_ticket.ticket
    # A second server with no session cache at all: only the ticket key is shared.
    resumed = connect(SUITE, tickets=keys, resume=session, sessions={})
    assert resumed.client_conn.resumed and resumed.server_conn.resumed
    assert resumed.server_conn.session_id == resumed.client.hello.session_id
    assert resumed.server_conn.session_id != session.session_id  # the client made it up
    assert resumed.server_conn.open(resumed.client_conn.seal(b"ping")) == b"ping"
    # The resumption renewed the ticket, and a ticket-resumed session is not cached by ID.
    assert resumed.client.session.ticket == resumed.server.new_session_ticket.ticket
    assert resumed.client.session.ticket != session.ticket
    assert resumed.server.session_to_cache is None
    kinds = [step.kind for step in resumed.server.trace.steps]
    assert kinds.index(StepKind.OPEN_TICKET) < kinds.index(StepKind.SEND_NEW_SESSION_TICKET)


def test_the_transcript_covers_the_ticket():
    keys = ring(now=time.time())
    full = connect(SUITE, tickets=keys)
    assert full.server.new_session_ticket.encode() in full.server.transcript
    assert full.client.transcript == full.server.transcript


def test_a_ticket_the_server_cannot_open_falls_back_to_a_full_handshake():
    now = time.time()
    first = connect(SUITE, tickets=ring(now=now))
    fallback = connect(SUITE, tickets=ring(now=now), resume=first.client.session, sessions={})
    assert not fallback.client_conn.resumed and not fallback.server_conn.resumed
    opened = [s for s in fallback.server.trace.steps if s.kind is StepKind.OPEN_TICKET]
    assert [s.data["opened"] for s in opened] == [False]
    assert fallback.client.session.ticket == fallback.server.new_session_ticket.ticket


def test_a_ticket_is_not_resumed_for_another_server_name_or_suite():
    keys = ring(now=time.time())
    first = connect(SUITE, tickets=keys)
    renamed = dataclasses.replace(first.client.session, server_name="other.example")
    # The client's own view does not matter: the name sealed inside the ticket does.
    assert connect(SUITE, tickets=keys, resume=renamed, sessions={}).server_conn.resumed
    hello = ClientHandshake(
        dataclasses.replace(client_config(SUITE, tickets=True), server_name="other.example"),
        resume=first.client.session,
        trace=Trace("client"),
    ).client_hello()
    server = ServerHandshake(server_config(), tickets=keys, trace=Trace("server"))
    assert not server.receive_client_hello(hello).resumed


def test_a_server_without_ticket_keys_ignores_the_extension():
    client = ClientHandshake(client_config(SUITE, tickets=True), trace=Trace("client"))
    server = ServerHandshake(server_config(), trace=Trace("server"))
    flight = server.receive_client_hello(client.client_hello())
    assert not flight.server_hello.extensions.session_ticket
    finish = client.receive_server_flight(flight)
    reply = server.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    assert server.new_session_ticket is None
    client.receive_server_finished(reply)
    assert client.session is not None and client.session.ticket is None


def test_a_promised_ticket_that_never_comes_fails_the_handshake():
    keys = ring(now=time.time())
    client = ClientHandshake(client_config(SUITE, tickets=True), trace=Trace("client"))
    server = ServerHandshake(server_config(), tickets=keys, trace=Trace("server"))
    finish = client.receive_server_flight(server.receive_client_hello(client.client_hello()))
    reply = server.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    with pytest.raises(UnexpectedMessage):
        client.receive_server_finished(reply)  # the NewSessionTicket was left out


def test_an_unsolicited_session_ticket_extension_is_refused():
    client = ClientHandshake(client_config(SUITE), trace=Trace("client"))
    server = ServerHandshake(server_config(), trace=Trace("server"))
    flight = server.receive_client_hello(client.client_hello())
    hello = flight.server_hello
    forged = dataclasses.replace(
        hello, extensions=dataclasses.replace(hello.extensions, session_ticket=True)
    )
    with pytest.raises(UnsupportedExtension):
        client.receive_server_flight(dataclasses.replace(flight, server_hello=forged))


def test_a_ticket_in_a_full_flight_is_refused():
    with pytest.raises(Exception, match="NewSessionTicket"):
        ServerFlight.from_json(
            {
                "session_id": "00" * 32,
                "server_random": "00" * 32,
                "cipher_suite": SUITE.name,
                "resumed": False,
                "extensions": {},
                "new_session_ticket": {"lifetime_hint": 1, "ticket": "AA=="},
            }
        )
