"""Replayed, reordered, dropped, reflected and spliced records on /message.

TLS records carry no sequence number on the wire; each side counts them (RFC 5246 §6.1), and
the count goes into the MAC or the AEAD nonce and additional data. A record that arrives
anywhere but at its own place in its own direction of its own connection fails to
authenticate (bad_record_mac), so nothing is ever processed twice or out of order.
"""

from __future__ import annotations

import pytest
from helpers.peer import ECDHE_SUITE, RSA_SUITE, Peer, unb64

SUITES = [RSA_SUITE, ECDHE_SUITE, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]

pytestmark = pytest.mark.parametrize("suite", SUITES)


def _processed(peer: Peer) -> tuple[int, int]:
    """(messages the server echoed, its read sequence number) on this connection."""
    view = peer.server_view()
    return view["messages"], view["sequence_numbers"]["read"]


def test_a_replayed_message_is_refused_and_processed_once(peer, suite):
    victim = peer(suite).complete()
    record, first = victim.send(b"transfer 100 to mallory")
    assert first.status == 200
    replay = victim.message(record)
    assert replay.code == "bad_record_mac"
    assert _processed(victim) == (1, 2)


def test_records_delivered_out_of_order_are_refused(peer, suite):
    victim = peer(suite).complete()
    first, second = victim.seal(b"one"), victim.seal(b"two")
    assert victim.message(second).code == "bad_record_mac"
    assert _processed(victim) == (0, 1)
    # The failure was fatal, so the record that was next in line is refused as well.
    assert victim.message(first).code == "unexpected_message"


def test_records_reordered_inside_one_body_are_refused_whole(peer, suite):
    victim = peer(suite).complete()
    first, second = victim.seal(b"one"), victim.seal(b"two")
    assert victim.message(second + first).code == "bad_record_mac"
    assert _processed(victim) == (0, 1)


def test_a_good_record_followed_by_a_bad_one_is_refused_whole(peer, suite):
    victim = peer(suite).complete()
    first, second = victim.seal(b"one"), victim.seal(b"two")
    damaged = second[:-1] + bytes((second[-1] ^ 1,))
    assert victim.message(first + damaged).code == "bad_record_mac"
    assert _processed(victim) == (0, 1)


def test_a_dropped_record_makes_the_next_one_fail(peer, suite):
    victim = peer(suite).complete()
    first, _dropped, third = victim.seal(b"one"), victim.seal(b"two"), victim.seal(b"three")
    assert victim.message(first).status == 200
    assert victim.message(third).code == "bad_record_mac"
    assert _processed(victim) == (1, 2)


def test_the_server_reply_reflected_back_is_refused(peer, suite):
    victim = peer(suite).complete()
    _, answer = victim.send(b"ping")
    assert answer.status == 200
    reflected = victim.message(unb64(answer.json["record"]))
    assert reflected.code == "bad_record_mac"
    assert _processed(victim) == (1, 2)


def test_a_record_spliced_from_another_connection_is_refused(peer, suite):
    alice, mallory = peer(suite).complete(), peer(suite).complete()
    record = alice.seal(b"for alice only")
    assert mallory.message(record).code == "bad_record_mac"
    assert _processed(mallory) == (0, 1)
    # The record itself was fine: its own connection takes it.
    own = alice.message(record)
    assert own.status == 200
    assert alice.open_reply(own).endswith(b"for alice only")


def test_the_finished_record_replayed_as_data_is_refused(peer, suite):
    victim = peer(suite).complete()
    assert victim.second_flight is not None
    assert victim.message(victim.second_flight.finished_record).code == "bad_record_mac"
    assert _processed(victim) == (0, 1)
