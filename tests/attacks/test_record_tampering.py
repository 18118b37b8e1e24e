"""Damaged records on /message: one answer for every integrity failure, and the connection ends.

Whatever part of a record an attacker changes (header, IV or nonce, ciphertext, MAC or tag,
padding, length), server_svc answers with the same bytes: 400 bad_record_mac "record
authentication failed". Telling a bad MAC from bad padding is the padding oracle
(Vaudenay 2002, POODLE, Lucky13); telling a bad length from a bad tag helps too.
As in TLS (RFC 5246 §7.2.2), the failure is fatal: the connection refuses everything
afterwards, and its session can no longer be resumed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from helpers import forge
from helpers.peer import ECDHE_SUITE, Answer, Peer

from kdf_lib.record import HEADER_LENGTH
from kdf_lib.suites import SUITES
from lab_common.contract import MESSAGE

#: (suite, encrypt_then_mac) for each record protection the lab speaks.
FAMILIES = {
    "cbc_sha256_etm": ("TLS_RSA_WITH_AES_128_CBC_SHA256", True),
    "cbc_sha256_mte": ("TLS_RSA_WITH_AES_128_CBC_SHA256", False),
    "cbc_sha1_etm": ("TLS_RSA_WITH_AES_256_CBC_SHA", True),
    "cbc_sha1_mte": ("TLS_RSA_WITH_AES_256_CBC_SHA", False),
    "aes_gcm": ("TLS_RSA_WITH_AES_128_GCM_SHA256", True),
    "chacha20_poly1305": ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", True),
}
CBC_FAMILIES = [name for name in FAMILIES if name.startswith("cbc")]

PLAINTEXT = b"attack at dawn, bring the keys" * 2
BAD_RECORD_MAC = b'{"error":{"code":"bad_record_mac","message":"record authentication failed"}}\n'

Tamper = Callable[[bytes, Peer], bytes | None]


def _fragment(record: bytes) -> bytes:
    return record[HEADER_LENGTH:]


def _tag_length(peer: Peer) -> int:
    suite = peer.handshake._schedule.suite  # type: ignore[union-attr]
    if suite.is_aead:
        return suite.tag_length
    assert peer.connection is not None
    return suite.mac_length if peer.connection.encrypt_then_mac else 0


def _with_length(record: bytes, delta: int) -> bytes:
    (length,) = struct.unpack(">H", record[3:5])
    return record[:3] + struct.pack(">H", length + delta) + record[5:]


def _remove_tag(record: bytes, peer: Peer) -> bytes | None:
    tag = _tag_length(peer)
    return forge.reframe(_fragment(record)[:-tag]) if tag else None


def _explicit_iv_flip(record: bytes, peer: Peer) -> bytes | None:
    suite = peer.handshake._schedule.suite  # type: ignore[union-attr]
    return forge.flip(record, HEADER_LENGTH) if suite.record_iv_length else None


def _iv_only(record: bytes, peer: Peer) -> bytes | None:
    suite = peer.handshake._schedule.suite  # type: ignore[union-attr]
    iv = suite.record_iv_length
    return forge.reframe(_fragment(record)[:iv]) if iv else None


TAMPERINGS: dict[str, Tamper] = {
    "header type application_data to handshake": lambda r, p: forge.flip(r, 0, 0x17 ^ 0x16),
    "header type not a content type": lambda r, p: forge.flip(r, 0, 0x70),
    "header major version": lambda r, p: forge.flip(r, 1),
    "header minor version": lambda r, p: forge.flip(r, 2),
    "header length one more": lambda r, p: _with_length(r, +1),
    "header length one less": lambda r, p: _with_length(r, -1),
    "explicit IV or nonce": _explicit_iv_flip,
    "a ciphertext byte": lambda r, p: forge.flip(r, len(r) - _tag_length(p) - 17),
    "last byte (MAC, tag or padding)": lambda r, p: forge.flip(r, len(r) - 1),
    "high bit of the last byte": lambda r, p: forge.flip(r, len(r) - 1, 0x80),
    "truncated by one byte": lambda r, p: forge.reframe(_fragment(r)[:-1]),
    "MAC or tag removed": _remove_tag,
    "one byte appended": lambda r, p: forge.reframe(_fragment(r) + b"\x00"),
    "one block appended": lambda r, p: forge.reframe(_fragment(r) + bytes(16)),
    "one block removed": lambda r, p: forge.reframe(_fragment(r)[:-16]),
    "IV or nonce only": _iv_only,
    "empty fragment": lambda r, p: forge.reframe(b""),
    "header without its fragment": lambda r, p: r[:HEADER_LENGTH],
    "less than a header": lambda r, p: r[:3],
    "record and a stray byte": lambda r, p: r + b"\x17",
}


def _cbc_forgery(**damage: object) -> Tamper:
    def build(record: bytes, peer: Peer) -> bytes | None:
        keys = forge.client_write_keys(peer)
        if keys.suite.is_aead:
            return None
        return forge.cbc_record(keys, peer.connection.writer.seq, PLAINTEXT, **damage)  # type: ignore[arg-type, union-attr]

    return build


HAND_MADE: dict[str, Tamper] = {
    "valid MAC, inconsistent padding": _cbc_forgery(padding=forge.bad_padding),
    "valid MAC, padding length beyond the record": _cbc_forgery(padding=forge.lying_padding),
    "bad MAC, valid padding": _cbc_forgery(mac_bad=True),
}


def _established(peer_factory: Callable[..., Peer], family: str) -> Peer:
    suite, etm = FAMILIES[family]
    peer = peer_factory(suite, etm=etm).complete()
    assert peer.connection is not None
    assert peer.connection.encrypt_then_mac is (etm and not SUITES[suite].is_aead)
    return peer


def _expect_bad_record_mac(answer: Answer, reference: Answer) -> None:
    assert answer.status == 400
    assert answer.body == BAD_RECORD_MAC
    assert (answer.status, answer.headers, answer.body) == (
        reference.status,
        reference.headers,
        reference.body,
    )


#: Parts a family's records do not have: ChaCha20-Poly1305 sends no nonce, MAC-then-encrypt
#: hides its MAC inside the ciphertext.
NOT_APPLICABLE = {
    ("chacha20_poly1305", "explicit IV or nonce"),
    ("chacha20_poly1305", "IV or nonce only"),
    ("cbc_sha1_mte", "MAC or tag removed"),
    ("cbc_sha256_mte", "MAC or tag removed"),
}
CASES = [
    (family, tamper)
    for family in sorted(FAMILIES)
    for tamper in sorted(TAMPERINGS)
    if (family, tamper) not in NOT_APPLICABLE
]


@pytest.fixture
def reference(peer) -> Answer:
    """The answer to the plainest damage (the last byte flipped) on a connection of its own."""
    victim = peer().complete()
    answer = victim.message(forge.flip(victim.seal(PLAINTEXT), -1))
    assert answer.status == 400
    return answer


@pytest.mark.parametrize(("family", "tamper"), CASES)
def test_every_damaged_record_gets_the_one_bad_record_mac_answer(peer, reference, family, tamper):
    victim = _established(peer, family)
    damaged = TAMPERINGS[tamper](victim.seal(PLAINTEXT), victim)
    assert damaged is not None
    _expect_bad_record_mac(victim.message(damaged), reference)


@pytest.mark.parametrize("forgery", sorted(HAND_MADE))
@pytest.mark.parametrize("family", CBC_FAMILIES)
def test_a_padding_oracle_gets_the_same_answer_as_a_bad_mac(peer, reference, family, forgery):
    victim = _established(peer, family)
    damaged = HAND_MADE[forgery](b"", victim)
    assert damaged is not None
    _expect_bad_record_mac(victim.message(damaged), reference)


@pytest.mark.parametrize("family", CBC_FAMILIES)
def test_the_hand_made_records_are_right_when_left_whole(peer, family):
    """The forgeries above fail for the one thing they change: built whole, they are accepted."""
    victim = _established(peer, family)
    record = forge.cbc_record(forge.client_write_keys(victim), 1, PLAINTEXT)
    answer = victim.message(record)
    assert answer.status == 200, answer.json
    assert victim.open_reply(answer).endswith(PLAINTEXT)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_an_authentication_failure_ends_the_connection_and_its_session(peer, family):
    suite, etm = FAMILIES[family]
    victim = _established(peer, family)
    _, first = victim.send(b"one good record")
    assert first.status == 200
    good = victim.seal(b"a good record after the bad one")
    assert victim.message(forge.flip(good, -1)).code == "bad_record_mac"
    # The connection is closed: even the intact record is refused now.
    after = victim.message(good)
    assert (after.status, after.code) == (409, "unexpected_message")
    view = victim.server_view()
    assert view["closed"] is True and view["messages"] == 1
    # The session is gone too: offering it again gives a full handshake with a new session.
    session = victim.handshake.session
    assert session is not None
    again = peer(suite, etm=etm, resume=session)
    assert again.hello().status == 200
    assert again.hello_json["resumed"] is False
    assert again.hello_json["session_id"] != session.session_id.hex()


def test_a_session_survives_when_nothing_failed(peer):
    """The control for the test above: without a failure the same session resumes."""
    first = peer(ECDHE_SUITE).complete()
    assert first.send(b"fine")[1].status == 200
    session = first.handshake.session
    again = peer(ECDHE_SUITE, resume=session)
    assert again.hello().status == 200 and again.hello_json["resumed"] is True


@pytest.mark.parametrize(
    "record",
    ["%%%", "QUFB\nQUFB", "QUFB-_==", "QUFBQQ", "QR==", 17, None, ["QUFB"]],
    ids=["junk", "newline", "urlsafe", "unpadded", "noncanonical", "number", "null", "list"],
)
def test_a_malformed_body_is_refused_before_the_record_layer(peer, record):
    """Not a record at all: the body is refused (400) and the connection goes on as it was."""
    victim = peer().complete()
    refused = victim.http.post(
        MESSAGE, json={"connection_id": victim.connection_id, "record": record}
    )
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "decode_error"
    _, fine = victim.send(b"still here")
    assert fine.status == 200
    assert victim.open_reply(fine).endswith(b"records 1..1: still here")
