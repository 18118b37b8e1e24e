"""Bleichenbacher's attack on RSA key exchange, against server_svc over HTTP (RFC 5246 §7.4.7.1).

The attacker sends ClientKeyExchange ciphertexts that decrypt to malformed PKCS#1 v1.5 blocks
and watches for any difference from a well-formed one. The server must answer each exactly
like a well-formed but wrong pre-master secret: the handshake fails at Finished with
bad_record_mac, byte for byte the same answer, and nothing it shows later tells them apart.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from helpers.peer import Answer, Peer
from helpers.pki import identity

from kdf_lib.messages import ClientKeyExchange

pytestmark = pytest.mark.parametrize("ems", [True, False], ids=["ems", "no_ems"])


def _public_key() -> rsa.RSAPublicNumbers:
    _, leaf = identity()
    key = leaf.certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key.public_numbers()


PUBLIC = _public_key()
K = (PUBLIC.n.bit_length() + 7) // 8  # the modulus length in bytes


def _nonzero(count: int) -> bytes:
    return bytes(secrets.randbelow(255) + 1 for _ in range(count))


def raw_rsa(block: bytes) -> bytes:
    """Textbook RSA on a hand-made block: what an attacker computes to build a probe."""
    assert len(block) == K
    return pow(int.from_bytes(block, "big"), PUBLIC.e, PUBLIC.n).to_bytes(K, "big")


def pkcs1_block(
    message: bytes, *, block_type: bytes = b"\x00\x02", padding: bytes | None = None
) -> bytes:
    """00 || 02 || PS || 00 || M, or with the given block type and padding string."""
    if padding is None:
        padding = _nonzero(K - 3 - len(message))
    return block_type + padding + b"\x00" + message


def premaster(version: bytes = b"\x03\x03") -> bytes:
    return version + secrets.token_bytes(46)


def _probes() -> dict[str, bytes]:
    """Ciphertexts whose plaintext is anything but a well-formed 48-byte pre-master secret."""
    pms = premaster()
    zero_in_padding = bytearray(_nonzero(K - 3 - 48))
    zero_in_padding[3] = 0  # the separator comes too early: PS would be 3 bytes
    probes = {
        "block type 00 01": raw_rsa(pkcs1_block(pms, block_type=b"\x00\x01")),
        "block type 00 00": raw_rsa(pkcs1_block(pms, block_type=b"\x00\x00")),
        "block type 01 02": raw_rsa(pkcs1_block(pms, block_type=b"\x01\x02")),
        "zero in the padding string": raw_rsa(pkcs1_block(pms, padding=bytes(zero_in_padding))),
        "no separator": raw_rsa(b"\x00\x02" + _nonzero(K - 2)),
        "padding string of 7 bytes": raw_rsa(
            b"\x00\x02" + _nonzero(7) + b"\x00" + secrets.token_bytes(K - 10)
        ),
        "ciphertext 0": (0).to_bytes(K, "big"),
        "ciphertext 1": (1).to_bytes(K, "big"),
        "ciphertext n-1": (PUBLIC.n - 1).to_bytes(K, "big"),
        "ciphertext n (out of range)": PUBLIC.n.to_bytes(K, "big"),
        "ciphertext one byte short": raw_rsa(pkcs1_block(pms))[1:],
        "ciphertext one byte long": b"\x00" + raw_rsa(pkcs1_block(pms)),
        "empty ciphertext": b"",
        "wrong version 03 01": raw_rsa(pkcs1_block(premaster(b"\x03\x01"))),
        "wrong version 00 00": raw_rsa(pkcs1_block(premaster(b"\x00\x00"))),
    }
    for length in (0, 2, 47, 49, 96):
        probes[f"{length}-byte plaintext"] = raw_rsa(pkcs1_block(secrets.token_bytes(length)))
    return probes


PROBES = _probes()


def _finish_with(peer: Peer, ciphertext: bytes) -> Answer:
    """A real client handshake whose ClientKeyExchange is replaced by ``ciphertext``."""
    assert peer.hello().status == 200
    peer.prepare_finish()
    cke = ClientKeyExchange(encrypted_pre_master_secret=ciphertext)
    return peer.finish(peer.finish_body(client_key_exchange=cke))


def _control(peer_factory, ems: bool) -> tuple[Answer, Peer]:
    """A well-formed pre-master secret, encrypted properly, that is not the client's own."""
    peer = peer_factory(ems=ems)
    return _finish_with(peer, raw_rsa(pkcs1_block(premaster()))), peer


def _actions(peer: Peer) -> list[str]:
    return [step["action"] for step in peer.server_view()["trace"]]


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_a_malformed_pre_master_secret_is_answered_exactly_like_a_wrong_one(peer, ems, probe):
    control, control_peer = _control(peer, ems)
    assert control.status == 400
    assert control.json == {
        "error": {"code": "bad_record_mac", "message": "record authentication failed"}
    }
    attacked = peer(ems=ems)
    answer = _finish_with(attacked, PROBES[probe])
    assert (answer.status, answer.headers, answer.body) == (
        control.status,
        control.headers,
        control.body,
    )
    # The hello did not depend on the probe, and the failure shows only at Finished: the
    # server walked the same steps as for the control, deriving keys from whatever it got.
    actions = _actions(attacked)
    assert actions == _actions(control_peer)
    assert actions.index("decrypt pre-master secret") < actions.index("key expansion")
    assert actions[-1] == "abort"
    view = attacked.server_view()
    assert (view["state"], view["error"]) == ("failed", "bad_record_mac")


def _fingerprint_like(view: dict) -> set[str]:
    return set(re.findall(r"[0-9a-f]{64}", json.dumps(view)))


def test_the_server_view_tells_nothing_about_the_decrypted_secret(peer, ems):
    """The same well-formed ciphertext sent twice must not leave a repeated value behind.

    A fingerprint of the decrypted pre-master secret would: it repeats when the padding is
    good and is fresh (the random fallback) when it is not, which is a padding oracle.
    """
    ciphertext = raw_rsa(pkcs1_block(premaster()))
    first, second = peer(ems=ems), peer(ems=ems)
    assert _finish_with(first, ciphertext).code == "bad_record_mac"
    assert _finish_with(second, ciphertext).code == "bad_record_mac"
    certificate = {step["data"].get("sha256") for step in first.server_view()["trace"]}
    repeated = _fingerprint_like(first.server_view()) & _fingerprint_like(second.server_view())
    assert repeated <= certificate


def test_the_client_own_secret_still_works(peer, ems):
    """The probes fail because of the pre-master secret alone: the unchanged handshake works."""
    honest = peer(ems=ems).complete()
    _, answer = honest.send(b"after the probes")
    assert answer.status == 200
