"""Key exchange: the RSA pre-master secret and ephemeral ECDH, with ServerKeyExchange signatures.

RFC 5246 §7.4.7.1 (RSA-encrypted premaster secret, with the Bleichenbacher
countermeasure), RFC 8422 §5.4/§5.10 (ECDHE parameters, point formats, signature)
and RFC 7748 §6.1 (the all-zero X25519 check); the RFC 7919 finite-field groups (ffdhe.py)
share the ephemeral key type. Primitives come from ``cryptography``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_private_key,
)

from . import ffdhe
from .errors import DecodeError, DecryptError, IllegalParameter
from .wire import u8, u16, vector

__all__ = [
    "CLIENT_VERSION",
    "PRE_MASTER_SECRET_LENGTH",
    "EphemeralKey",
    "NamedGroup",
    "SignatureScheme",
    "decode_public_key",
    "dh_shared_secret",
    "ecdh_shared_secret",
    "generate_ephemeral_key",
    "is_ffdhe",
    "new_rsa_pre_master_secret",
    "rsa_decrypt_pre_master_secret",
    "rsa_encrypt_pre_master_secret",
    "scheme_uses_ecdsa",
    "server_ecdh_params",
    "sign_digitally_signed",
    "sign_server_params",
    "signing_schemes",
    "verify_digitally_signed",
    "verify_server_params",
]

PRE_MASTER_SECRET_LENGTH = 48
CLIENT_VERSION = b"\x03\x03"


class NamedGroup(IntEnum):
    """RFC 8422 §5.1.1 / RFC 7919 §6 / IANA supported_groups."""

    secp256r1 = 23
    secp384r1 = 24
    x25519 = 29
    ffdhe2048 = 256
    ffdhe3072 = 257


def is_ffdhe(group: NamedGroup) -> bool:
    """A finite-field group (RFC 7919), for DHE suites; the others are curves, for ECDHE."""
    return group in ffdhe.FFDHE_GROUPS


class SignatureScheme(IntEnum):
    """RFC 5246 §7.4.1.4.1 SignatureAndHashAlgorithm pairs, written as RFC 8446 code points."""

    rsa_pkcs1_sha256 = 0x0401
    rsa_pkcs1_sha384 = 0x0501
    rsa_pss_rsae_sha256 = 0x0804
    rsa_pss_rsae_sha384 = 0x0805
    # TLS 1.2 reads these as {hash, ecdsa(3)}: ECDSA with that hash on any curve. The curve
    # in the TLS 1.3 name binds only there (RFC 8446 §4.2.3).
    ecdsa_secp256r1_sha256 = 0x0403
    ecdsa_secp384r1_sha384 = 0x0503


_NIST_CURVES: dict[NamedGroup, ec.EllipticCurve] = {
    NamedGroup.secp256r1: ec.SECP256R1(),
    NamedGroup.secp384r1: ec.SECP384R1(),
}
_POINT_LENGTHS = {NamedGroup.secp256r1: 65, NamedGroup.secp384r1: 97, NamedGroup.x25519: 32}

# -- RSA ---------------------------------------------------------------------


def new_rsa_pre_master_secret(
    client_version: bytes = CLIENT_VERSION,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> bytes:
    """PreMasterSecret = client_version (2 bytes) + random (46 bytes), RFC 5246 §7.4.7.1."""
    return client_version + random_bytes(46)


def rsa_encrypt_pre_master_secret(public_key: rsa.RSAPublicKey, pre_master_secret: bytes) -> bytes:
    """RSAES-PKCS1-v1_5 encryption of the 48-byte pre-master secret to the certificate key."""
    if len(pre_master_secret) != PRE_MASTER_SECRET_LENGTH:
        raise ValueError("an RSA pre-master secret is 48 bytes")
    return public_key.encrypt(pre_master_secret, padding.PKCS1v15())


def rsa_decrypt_pre_master_secret(
    private_key: rsa.RSAPrivateKey,
    encrypted: bytes,
    client_version: bytes = CLIENT_VERSION,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> bytes:
    """Recover the pre-master secret without ever revealing whether decryption worked.

    RFC 5246 §7.4.7.1: a random 48-byte R is prepared first; if the PKCS#1 padding
    is wrong or the plaintext is not 48 bytes, R is used; otherwise the version
    bytes are forced to ``client_version``. The handshake then fails at Finished,
    indistinguishably from a well-formed but wrong secret. Current OpenSSL builds
    return a synthetic plaintext for bad padding instead of raising ("implicit
    rejection"), so the length check below is what decides, not an exception.
    """
    fallback = random_bytes(PRE_MASTER_SECRET_LENGTH)
    try:
        plaintext = private_key.decrypt(encrypted, padding.PKCS1v15())
    except ValueError:
        # Raised for a ciphertext of the wrong length or out of range: public facts.
        plaintext = b""
    if len(plaintext) == PRE_MASTER_SECRET_LENGTH:
        # A wrong version is overwritten, never reported (it would be an oracle too).
        return client_version + plaintext[2:]
    return fallback


# -- ECDHE -------------------------------------------------------------------

PrivateKey = ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey | ffdhe.DHPrivateKey
PublicKey = ec.EllipticCurvePublicKey | x25519.X25519PublicKey


@dataclass(frozen=True)
class EphemeralKey:
    """An ephemeral ECDH or finite-field DH key pair; the private half never shows in repr()."""

    group: NamedGroup
    public_bytes: bytes
    private_key: PrivateKey = field(repr=False)


def generate_ephemeral_key(group: NamedGroup) -> EphemeralKey:
    """A fresh key pair on ``group``; NIST points are encoded uncompressed (RFC 8422 §5.4.1)."""
    private: PrivateKey
    if is_ffdhe(group):
        dh_group = ffdhe.FFDHE_GROUPS[group]
        dh_private = ffdhe.generate_private_key(dh_group)
        return EphemeralKey(group, ffdhe.public_bytes(dh_group, dh_private), dh_private)
    if group is NamedGroup.x25519:
        private = x25519.X25519PrivateKey.generate()
        public = private.public_key().public_bytes_raw()
    else:
        private = ec.generate_private_key(_NIST_CURVES[group])
        public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return EphemeralKey(group, public, private)


def export_ephemeral_key(key: EphemeralKey) -> bytes:
    """The private half as PKCS#8 DER, for a store that keeps a handshake between requests
    (it must encrypt it at rest). A finite-field key is its private exponent."""
    if isinstance(key.private_key, ffdhe.DHPrivateKey):
        return ffdhe.export_private_key(key.private_key)
    return key.private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def import_ephemeral_key(group: NamedGroup, der: bytes) -> EphemeralKey:
    """The key pair :func:`export_ephemeral_key` wrote. Raises ValueError if it is not a key
    on ``group``."""
    if is_ffdhe(group):
        dh_group = ffdhe.FFDHE_GROUPS[group]
        dh_private = ffdhe.import_private_key(dh_group, der)
        return EphemeralKey(group, ffdhe.public_bytes(dh_group, dh_private), dh_private)
    private = load_der_private_key(der, password=None)
    if group is NamedGroup.x25519 and isinstance(private, x25519.X25519PrivateKey):
        public = private.public_key().public_bytes_raw()
    elif (
        group is not NamedGroup.x25519
        and isinstance(private, ec.EllipticCurvePrivateKey)
        and private.curve.name == _NIST_CURVES[group].name
    ):
        public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    else:
        raise ValueError(f"not a {group.name} private key")
    return EphemeralKey(group, public, private)


def decode_public_key(group: NamedGroup, data: bytes) -> PublicKey:
    """Parse a peer's public key, accepting only what RFC 8422 allows.

    Raises:
        DecodeError: empty (a point is ``<1..2^8-1>``), or the wrong length for the group
            (X25519 keys, uncompressed NIST points).
        IllegalParameter: a NIST point in another format than uncompressed (compressed,
            identity, unknown), whatever its length; a point not on the curve.
    """
    if is_ffdhe(group):
        raise ValueError("a finite-field public value is checked by ffdhe.check_public_value")
    if not data:
        raise DecodeError("an EC point is 1 to 255 bytes (RFC 8422 §5.4)")
    expected = _POINT_LENGTHS[group]
    if group is NamedGroup.x25519:
        if len(data) != expected:
            raise DecodeError(f"an x25519 public key is {expected} bytes")
        return x25519.X25519PublicKey.from_public_bytes(data)
    if data[:1] in (b"\x02", b"\x03"):
        raise IllegalParameter("compressed EC points are not negotiated (RFC 8422 §5.1.2)")
    if data[:1] == b"\x00":
        raise IllegalParameter("the point at infinity is not a valid public key")
    if data[:1] != b"\x04":
        raise IllegalParameter("unknown EC point format")
    if len(data) != expected:
        raise DecodeError(f"an uncompressed {group.name} point is {expected} bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_NIST_CURVES[group], data)
    except ValueError:
        raise IllegalParameter("EC point is not on the curve") from None


def ecdh_shared_secret(private: EphemeralKey, peer_public: bytes) -> bytes:
    """The ECDH pre-master secret: the x-coordinate (NIST, RFC 8422 §5.10) or the X25519 output.

    The peer key is validated first; an all-zero X25519 result (a low-order peer
    point, RFC 7748 §6.1) is refused.
    """
    peer = decode_public_key(private.group, peer_public)
    try:
        if isinstance(private.private_key, x25519.X25519PrivateKey):
            assert isinstance(peer, x25519.X25519PublicKey)
            shared = private.private_key.exchange(peer)
        else:
            assert isinstance(peer, ec.EllipticCurvePublicKey)
            assert isinstance(private.private_key, ec.EllipticCurvePrivateKey)
            shared = private.private_key.exchange(ec.ECDH(), peer)
    except ValueError:
        # cryptography refuses low-order X25519 peers itself.
        raise IllegalParameter("ECDH with this public key gives no shared secret") from None
    if not any(shared):
        raise IllegalParameter("ECDH with this public key gives an all-zero secret")
    return shared


def dh_shared_secret(private: EphemeralKey, peer_public: bytes) -> bytes:
    """The finite-field DHE pre-master secret: Z with leading zero bytes stripped
    (RFC 5246 §8.1.2), after the peer's value passed 1 < y < p - 1 (RFC 7919 §5.1)."""
    assert isinstance(private.private_key, ffdhe.DHPrivateKey)
    return ffdhe.shared_secret(ffdhe.FFDHE_GROUPS[private.group], private.private_key, peer_public)


def server_dh_params(group: NamedGroup, public_bytes: bytes) -> bytes:
    """ServerDHParams: dh_p, dh_g, dh_Ys, each ``opaque <1..2^16-1>`` (RFC 5246 §7.4.3)."""
    dh_group = ffdhe.FFDHE_GROUPS[group]
    return vector(dh_group.p_bytes, 2) + vector(dh_group.g_bytes, 2) + vector(public_bytes, 2)


def server_ecdh_params(group: NamedGroup, public_bytes: bytes) -> bytes:
    """ServerECDHParams: curve_type named_curve(3), the group, the point (RFC 8422 §5.4)."""
    return u8(3) + u16(group) + vector(public_bytes, 1)


_SCHEME_HASH: dict[SignatureScheme, type[hashes.HashAlgorithm]] = {
    SignatureScheme.rsa_pkcs1_sha256: hashes.SHA256,
    SignatureScheme.rsa_pkcs1_sha384: hashes.SHA384,
    SignatureScheme.rsa_pss_rsae_sha256: hashes.SHA256,
    SignatureScheme.rsa_pss_rsae_sha384: hashes.SHA384,
    SignatureScheme.ecdsa_secp256r1_sha256: hashes.SHA256,
    SignatureScheme.ecdsa_secp384r1_sha384: hashes.SHA384,
}
_ECDSA_SCHEMES = frozenset(
    {SignatureScheme.ecdsa_secp256r1_sha256, SignatureScheme.ecdsa_secp384r1_sha384}
)


def signing_schemes() -> tuple[SignatureScheme, ...]:
    """Every scheme the lab signs and verifies DigitallySigned content with."""
    return tuple(_SCHEME_HASH)


def scheme_uses_ecdsa(scheme: SignatureScheme) -> bool:
    """True for an ECDSA scheme (an EC certificate key), False for an RSA one."""
    return scheme in _ECDSA_SCHEMES


def _padding_for(scheme: SignatureScheme) -> padding.AsymmetricPadding:
    if scheme in (SignatureScheme.rsa_pss_rsae_sha256, SignatureScheme.rsa_pss_rsae_sha384):
        hash_cls = _SCHEME_HASH[scheme]
        # RFC 8446 §4.2.3 (used by TLS 1.2 too): the salt is as long as the digest.
        return padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=padding.PSS.DIGEST_LENGTH)
    return padding.PKCS1v15()


def _signed_content(client_random: bytes, server_random: bytes, params: bytes) -> bytes:
    # RFC 8422 §5.4: the signature covers both randoms, so a recorded
    # ServerKeyExchange cannot be replayed into another handshake.
    return client_random + server_random + params


def sign_digitally_signed(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    scheme: SignatureScheme,
    content: bytes,
) -> bytes:
    """A DigitallySigned signature (RFC 5246 §4.7) with ``scheme`` over ``content``: the
    ServerKeyExchange's and the client's CertificateVerify. An ECDSA signature is the
    DER-encoded Ecdsa-Sig-Value (RFC 8422 §5.4). Raises ValueError if ``scheme`` does not fit
    the key's type."""
    is_ec = isinstance(private_key, ec.EllipticCurvePrivateKey)
    if scheme not in _SCHEME_HASH or is_ec is not scheme_uses_ecdsa(scheme):
        raise ValueError(f"{scheme.name} cannot sign with an {'EC' if is_ec else 'RSA'} key")
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(content, ec.ECDSA(_SCHEME_HASH[scheme]()))
    return private_key.sign(content, _padding_for(scheme), _SCHEME_HASH[scheme]())


def verify_digitally_signed(
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    scheme: SignatureScheme,
    signature: bytes,
    content: bytes,
    *,
    message: str,
    key_of: str,
) -> None:
    """Raise DecryptError unless ``signature`` is ``public_key``'s DigitallySigned signature
    with ``scheme`` over ``content`` (``message`` names the message in the error);
    IllegalParameter when the scheme does not fit the key (RFC 5246 §7.4.1.4.1: the scheme's
    signature algorithm is the certificate key's; ``key_of`` names whose key it is)."""
    is_ec = isinstance(public_key, ec.EllipticCurvePublicKey)
    if scheme not in _SCHEME_HASH or is_ec is not scheme_uses_ecdsa(scheme):
        raise IllegalParameter(f"{scheme.name} does not fit {key_of}")
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            # A signature that is not a DER Ecdsa-Sig-Value fails here like a wrong one.
            public_key.verify(signature, content, ec.ECDSA(_SCHEME_HASH[scheme]()))
        else:
            public_key.verify(signature, content, _padding_for(scheme), _SCHEME_HASH[scheme]())
    except InvalidSignature:
        raise DecryptError(f"{message} signature does not verify") from None


def sign_server_params(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    scheme: SignatureScheme,
    client_random: bytes,
    server_random: bytes,
    params: bytes,
) -> bytes:
    """The ServerKeyExchange's signature over the randoms and params
    (:func:`sign_digitally_signed`)."""
    content = _signed_content(client_random, server_random, params)
    return sign_digitally_signed(private_key, scheme, content)


def verify_server_params(
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    scheme: SignatureScheme,
    signature: bytes,
    client_random: bytes,
    server_random: bytes,
    params: bytes,
) -> None:
    """Raise DecryptError unless ``signature`` is the certificate key's signature over the params."""
    content = _signed_content(client_random, server_random, params)
    verify_digitally_signed(
        public_key,
        scheme,
        signature,
        content,
        message="ServerKeyExchange",
        key_of="the certificate's key",
    )
