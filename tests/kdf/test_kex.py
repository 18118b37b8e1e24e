"""Key exchange: the RSA pre-master secret countermeasure (RFC 5246 §7.4.7.1) and ECDHE
point validation (RFC 8422 §5.4, RFC 7748 §6.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from helpers.pair import client_config
from helpers.pki import build_certificate, identity

from kdf_lib import kex, pki
from kdf_lib.errors import BadRecordMac, DecodeError, IllegalParameter
from kdf_lib.handshake import ClientHandshake, ServerConfig, ServerHandshake
from kdf_lib.kex import NamedGroup
from kdf_lib.messages import ClientKeyExchange
from kdf_lib.role import Role
from kdf_lib.trace import Trace

WYCHEPROOF = Path(__file__).parent.parent / "vectors" / "wycheproof" / "rsa_pkcs1_2048_test.json"


def wycheproof_cases() -> list[tuple[rsa.RSAPrivateKey, dict]]:
    """Every (key, test) pair of the file; each test group has its own key."""
    data = json.loads(WYCHEPROOF.read_text())
    cases = []
    for group in data["testGroups"]:
        key = serialization.load_pem_private_key(group["privateKeyPem"].encode(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        cases.extend((key, test) for test in group["tests"])
    return cases


WYCHEPROOF_CASES = wycheproof_cases()
WYCHEPROOF_KEY = WYCHEPROOF_CASES[0][0]


def fixed_random(n: int) -> bytes:
    return b"\xaa" * n


@pytest.mark.parametrize(
    ("key", "case"), WYCHEPROOF_CASES, ids=[f"tc{c['tcId']}" for _, c in WYCHEPROOF_CASES]
)
def test_rsa_decryption_never_reveals_whether_padding_was_valid(key, case):
    assert len(bytes.fromhex(case["msg"])) != 48
    ciphertext = bytes.fromhex(case["ct"])
    pms = kex.rsa_decrypt_pre_master_secret(key, ciphertext, random_bytes=fixed_random)
    # Always 48 bytes, never an exception. None of the Wycheproof
    # messages is 48 bytes long, so every case, valid or not, must fall back to R.
    assert pms == b"\xaa" * 48


def test_a_well_formed_pre_master_secret_is_recovered():
    secret = kex.new_rsa_pre_master_secret()
    ciphertext = kex.rsa_encrypt_pre_master_secret(WYCHEPROOF_KEY.public_key(), secret)
    assert (
        kex.rsa_decrypt_pre_master_secret(WYCHEPROOF_KEY, ciphertext, random_bytes=fixed_random)
        == secret
    )


def test_a_wrong_version_is_overwritten_not_reported():
    secret = b"\x03\x01" + bytes(range(46))
    ciphertext = WYCHEPROOF_KEY.public_key().encrypt(secret, padding.PKCS1v15())
    recovered = kex.rsa_decrypt_pre_master_secret(WYCHEPROOF_KEY, ciphertext)
    assert recovered == b"\x03\x03" + bytes(range(46))


def _wycheproof_server(key: rsa.RSAPrivateKey) -> ServerConfig:
    """A server whose certificate carries a Wycheproof key, issued by the run's CA."""
    ca, _ = identity()
    return ServerConfig((build_certificate(key, ca),), key)


def _server_outcome(key: rsa.RSAPrivateKey, ciphertext: bytes | None) -> tuple[type, str]:
    """Run a handshake whose ClientKeyExchange is replaced by ``ciphertext`` and report how
    the server refused it (None = a valid encryption of a *different* pre-master secret)."""
    config = _wycheproof_server(key)
    client = ClientHandshake(client_config(), trace=Trace(Role.CLIENT))
    server = ServerHandshake(config, trace=Trace(Role.SERVER))
    finish = client.receive_server_flight(server.receive_client_hello(client.client_hello()))
    if ciphertext is None:
        other = kex.new_rsa_pre_master_secret()
        ciphertext = kex.rsa_encrypt_pre_master_secret(key.public_key(), other)
    probe = ClientKeyExchange(encrypted_pre_master_secret=ciphertext)
    with pytest.raises(Exception) as caught:
        server.receive_client_finish(probe, finish.finished_record)
    assert server.connection is None
    return type(caught.value), str(caught.value)


def test_every_bleichenbacher_probe_fails_exactly_like_a_wrong_secret():
    controls = {}
    for key, case in WYCHEPROOF_CASES:
        if id(key) not in controls:
            controls[id(key)] = _server_outcome(key, None)
            assert controls[id(key)][0] is BadRecordMac
        outcome = _server_outcome(key, bytes.fromhex(case["ct"]))
        assert outcome == controls[id(key)], case["tcId"]


@pytest.mark.parametrize("group", [g for g in NamedGroup if not kex.is_ffdhe(g)])
def test_ecdh_agrees_on_every_group(group):
    a, b = kex.generate_ephemeral_key(group), kex.generate_ephemeral_key(group)
    assert kex.ecdh_shared_secret(a, b.public_bytes) == kex.ecdh_shared_secret(b, a.public_bytes)
    if group is not NamedGroup.x25519:
        assert a.public_bytes[0] == 4  # uncompressed


@pytest.mark.parametrize("group", [NamedGroup.secp256r1, NamedGroup.secp384r1])
def test_nist_points_that_are_not_uncompressed_and_on_the_curve_are_refused(group):
    me, peer = kex.generate_ephemeral_key(group), kex.generate_ephemeral_key(group)
    size = len(peer.public_bytes)
    compressed = bytes([2 + (peer.public_bytes[-1] & 1)]) + peer.public_bytes[1 : 1 + size // 2]
    off_curve = peer.public_bytes[:-1] + bytes([peer.public_bytes[-1] ^ 1])
    with pytest.raises(IllegalParameter):
        kex.ecdh_shared_secret(me, compressed)
    with pytest.raises(IllegalParameter):
        kex.ecdh_shared_secret(me, b"\x00")  # the point at infinity
    with pytest.raises(IllegalParameter):
        kex.ecdh_shared_secret(me, off_curve)
    with pytest.raises(DecodeError):
        kex.ecdh_shared_secret(me, peer.public_bytes[:-1])
    with pytest.raises(IllegalParameter):
        kex.ecdh_shared_secret(me, b"\x05" + peer.public_bytes[1:])


# Low-order points on Curve25519 (RFC 7748 §6.1 says to check for the all-zero result);
# the list is the one libsodium and Wycheproof use.
X25519_LOW_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize("point", X25519_LOW_ORDER)
def test_x25519_low_order_points_are_refused(point):
    me = kex.generate_ephemeral_key(NamedGroup.x25519)
    with pytest.raises(IllegalParameter):
        kex.ecdh_shared_secret(me, bytes.fromhex(point))


@pytest.mark.parametrize("length", [0, 31, 33])
def test_x25519_keys_of_the_wrong_length_are_decode_errors(length):
    me = kex.generate_ephemeral_key(NamedGroup.x25519)
    with pytest.raises(DecodeError):
        kex.ecdh_shared_secret(me, b"\x09" * length)


def test_ephemeral_private_keys_stay_out_of_repr():
    key = kex.generate_ephemeral_key(NamedGroup.x25519)
    assert "private" not in repr(key)


def test_server_key_exchange_signature_covers_both_randoms():
    _, leaf = identity()
    params = kex.server_ecdh_params(NamedGroup.x25519, b"\x09" * 32)
    scheme = kex.SignatureScheme.rsa_pss_rsae_sha256
    signature = kex.sign_server_params(leaf.private_key, scheme, b"c" * 32, b"s" * 32, params)
    public = leaf.private_key.public_key()
    kex.verify_server_params(public, scheme, signature, b"c" * 32, b"s" * 32, params)
    from kdf_lib.errors import DecryptError

    # A signature recorded in one handshake does not verify with another handshake's randoms.
    with pytest.raises(DecryptError):
        kex.verify_server_params(public, scheme, signature, b"C" * 32, b"s" * 32, params)
    with pytest.raises(DecryptError):
        kex.verify_server_params(
            public, scheme, signature, b"c" * 32, b"s" * 32, params[:-1] + b"\x08"
        )


def test_rsa_key_sizes_match_the_certificate():
    assert isinstance(WYCHEPROOF_KEY, rsa.RSAPrivateKey)
    assert pki.MIN_RSA_KEY_SIZE == 2048
