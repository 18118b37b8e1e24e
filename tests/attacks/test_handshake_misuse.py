"""Bad Finished messages and handshake messages out of order, against server_svc over HTTP.

Each is refused with the alert a TLS server would send (RFC 5246 §7.2.2, §7.4.9): a Finished
record that does not authenticate is bad_record_mac, one that authenticates but holds the
wrong verify_data is decrypt_error, a malformed one decode_error, and a message the state
machine does not expect is unexpected_message. Any of them is fatal: the connection accepts
nothing afterwards, not even the correct message, and its session cannot be resumed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers.peer import ECDHE_SUITE, RSA_SUITE, Answer, Peer, b64

from kdf_lib.errors import IllegalParameter
from kdf_lib.handshake import ClientState
from kdf_lib.messages import ClientKeyExchange, Finished, ServerFlight
from kdf_lib.record import ContentType
from kdf_lib.role import Role
from kdf_lib.suites import SUITES

pytestmark = pytest.mark.parametrize("suite", [RSA_SUITE, ECDHE_SUITE])


def _flipped(data: bytes) -> bytes:
    return data[:-1] + bytes((data[-1] ^ 0x01,))


def _ready(peer_factory: Callable[..., Peer], suite: str) -> Peer:
    """A peer whose second flight is computed but not sent."""
    peer = peer_factory(suite)
    assert peer.hello().status == 200
    peer.prepare_finish()
    return peer


def _assert_dead(peer: Peer) -> None:
    """Nothing works on the connection any more, the correct second flight included."""
    correct = peer.finish(peer.finish_body())
    assert (correct.status, correct.code) == (409, "unexpected_message")
    assert peer.message(b"\x17\x03\x03\x00\x00").code == "unexpected_message"
    view = peer.server_view()
    assert view["state"] == "failed" and view["fingerprints"] is None


BAD_FINISHED: dict[str, tuple[Callable[[Peer], bytes], str]] = {
    "record flipped": (lambda p: _flipped(p.second_flight.finished_record), "bad_record_mac"),  # type: ignore[union-attr]
    "verify_data flipped": (
        lambda p: p.client_finished_record(_flipped(p.verify_data(Role.CLIENT))),
        "decrypt_error",
    ),
    "verify_data of 11 bytes": (
        lambda p: p.client_finished_record(p.verify_data(Role.CLIENT)[:11]),
        "decode_error",
    ),
    "verify_data of 13 bytes": (
        lambda p: p.client_finished_record(p.verify_data(Role.CLIENT) + b"\x00"),
        "decode_error",
    ),
    "the server's label": (
        lambda p: p.client_finished_record(p.verify_data(Role.SERVER)),
        "decrypt_error",
    ),
    "sealed at sequence number 1": (
        lambda p: p.client_finished_record(p.verify_data(Role.CLIENT), seq=1),
        "bad_record_mac",
    ),
    "sent as application data": (
        lambda p: p.fresh_writer().seal(
            ContentType.application_data, Finished(p.verify_data(Role.CLIENT)).encode()
        ),
        "unexpected_message",
    ),
    "two Finished messages in one record": (
        lambda p: p.fresh_writer().seal(
            ContentType.handshake, Finished(p.verify_data(Role.CLIENT)).encode() * 2
        ),
        "decode_error",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FINISHED))
def test_a_bad_client_finished_fails_the_handshake_for_good(peer, suite, case):
    attacker = _ready(peer, suite)
    make_record, code = BAD_FINISHED[case]
    answer = attacker.finish(attacker.finish_body(finished_record=make_record(attacker)))
    assert answer.code == code
    assert answer.status == (409 if code == "unexpected_message" else 400)
    _assert_dead(attacker)


def test_the_hand_made_finished_is_accepted_when_right(peer, suite):
    """The control for the forgeries above: the same construction with the right values works."""
    honest = _ready(peer, suite)
    record = honest.client_finished_record(honest.verify_data(Role.CLIENT))
    assert honest.finish(honest.finish_body(finished_record=record)).status == 200
    assert honest.send(b"fine")[1].status == 200


def test_a_finished_from_an_earlier_connection_is_refused(peer, suite):
    old = peer(suite).complete()
    assert old.second_flight is not None
    attacker = _ready(peer, suite)
    answer = attacker.finish(
        attacker.finish_body(finished_record=old.second_flight.finished_record)
    )
    assert answer.code == "bad_record_mac"
    _assert_dead(attacker)


def test_finish_without_a_hello_is_an_unknown_connection(peer, suite):
    attacker = _ready(peer, suite)
    body = attacker.finish_body()
    body["connection_id"] = "0" * 32
    answer = attacker.finish(body)
    assert (answer.status, answer.code) == (404, "unknown_connection")


def test_finish_twice_ends_the_connection_and_its_session(peer, suite):
    victim = peer(suite).complete()
    again = victim.finish(victim.finish_body())
    assert (again.status, again.code) == (409, "unexpected_message")
    # The repeated message was fatal: the established connection is closed ...
    assert victim.send(b"after the repeat")[1].code == "unexpected_message"
    # ... and its session cannot be resumed.
    resumed = peer(suite, resume=victim.handshake.session)
    assert resumed.hello().status == 200 and resumed.hello_json["resumed"] is False


def test_application_data_before_finished_fails_the_handshake(peer, suite):
    attacker = _ready(peer, suite)
    early = attacker.message(b"\x17\x03\x03\x00\x20" + bytes(32))
    assert (early.status, early.code) == (409, "unexpected_message")
    _assert_dead(attacker)


def test_a_missing_client_key_exchange_fails_the_handshake(peer, suite):
    attacker = _ready(peer, suite)
    answer = attacker.finish(attacker.finish_body(client_key_exchange=None))
    assert (answer.status, answer.code) == (409, "unexpected_message")
    _assert_dead(attacker)


def test_the_other_key_exchange_fails_the_handshake(peer, suite):
    attacker = _ready(peer, suite)
    if SUITES[suite].key_exchange.value == "rsa":
        wrong = ClientKeyExchange(public_key=bytes(32))
    else:
        wrong = ClientKeyExchange(encrypted_pre_master_secret=bytes(256))
    answer = attacker.finish(attacker.finish_body(client_key_exchange=wrong))
    assert (answer.status, answer.code) == (400, "decode_error")
    _assert_dead(attacker)


def test_a_client_key_exchange_in_a_resumed_handshake_fails_it(peer, suite):
    first = peer(suite).complete()
    resumed = peer(suite, resume=first.handshake.session)
    assert resumed.hello().status == 200 and resumed.hello_json["resumed"] is True
    resumed.second_flight = resumed.handshake.receive_server_flight(resumed.flight)  # type: ignore[arg-type]
    assert first.second_flight is not None
    answer = resumed.finish(
        resumed.finish_body(client_key_exchange=first.second_flight.client_key_exchange)
    )
    assert (answer.status, answer.code) == (409, "unexpected_message")
    assert resumed.server_view()["state"] == "failed"


def test_a_bad_finished_on_resumption_ends_the_session(peer, suite):
    first = peer(suite).complete()
    session = first.handshake.session
    resumed = peer(suite, resume=session)
    assert resumed.hello().status == 200 and resumed.hello_json["resumed"] is True
    resumed.second_flight = resumed.handshake.receive_server_flight(resumed.flight)  # type: ignore[arg-type]
    bad = resumed.client_finished_record(_flipped(resumed.verify_data(Role.CLIENT)))
    answer = resumed.finish(resumed.finish_body(finished_record=bad))
    assert answer.code == "decrypt_error"
    # RFC 5246 §7.2.2: a session whose handshake ended in a fatal alert is not resumed again.
    later = peer(suite, resume=session)
    assert later.hello().status == 200 and later.hello_json["resumed"] is False


def test_an_unknown_suite_in_the_client_hello_is_refused(peer, suite):
    attacker = peer(suite)
    body = attacker.hello_body()
    body["cipher_suites"] = ["TLS_RSA_WITH_RC4_128_MD5", *body["cipher_suites"]]
    answer = attacker.hello(body)
    assert (answer.status, answer.code) == (400, "illegal_parameter")


def test_the_server_never_picks_a_suite_that_was_not_offered(peer, suite):
    """Not even to resume a session made with another suite: that becomes a full handshake."""
    first = peer(suite).complete()
    other = "TLS_RSA_WITH_AES_128_GCM_SHA256" if suite != RSA_SUITE else ECDHE_SUITE
    offer = peer(other)
    body = offer.hello_body()
    body["session_id"] = first.handshake.session.session_id.hex()  # type: ignore[union-attr]
    answer = offer.hello(body)
    assert answer.status == 200
    assert answer.json["cipher_suite"] == other and answer.json["resumed"] is False


def test_the_client_refuses_a_server_hello_with_a_suite_it_did_not_offer(peer, suite):
    """A man in the middle rewrites the server's choice: the client stops before any secret."""
    victim = peer(suite)
    assert victim.hello().status == 200
    other = "TLS_RSA_WITH_AES_128_CBC_SHA" if suite != "TLS_RSA_WITH_AES_128_CBC_SHA" else RSA_SUITE
    rewritten = dict(victim.hello_json, cipher_suite=other)
    del rewritten["connection_id"]
    with pytest.raises(IllegalParameter):
        victim.handshake.receive_server_flight(ServerFlight.from_json(rewritten))
    assert victim.handshake.state is ClientState.FAILED
    assert not any("pre-master" in step.action for step in victim.handshake.trace.steps)


def test_a_refused_finish_body_leaves_the_handshake_as_it_was(peer, suite):
    """A body the codec refuses never reaches the state machine: the handshake can go on."""
    attacker = _ready(peer, suite)
    body = attacker.finish_body()
    refused: list[Answer] = [
        attacker.finish({**body, "finished_record": "not base64!"}),
        attacker.finish({**body, "extra": 1}),
        attacker.finish({**body, "client_key_exchange": {"public_key": "zz"}}),
        attacker.finish({**body, "finished_record": b64(b"\x16" * 5000)}),
    ]
    assert [answer.code for answer in refused] == ["decode_error"] * 4
    assert attacker.finish(body).status == 200
