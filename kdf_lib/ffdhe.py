"""Finite-field Diffie-Hellman with the RFC 7919 groups: the primes, key pairs, the checks.

RFC 7919 Appendix A (ffdhe2048, ffdhe3072: safe primes, generator 2), RFC 7919 §5.1 (the
peer's public value), RFC 5246 §8.1.2 (the pre-master secret is Z with its leading zero bytes
stripped). Primitives come from ``cryptography``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding, ParameterFormat
from cryptography.utils import CryptographyDeprecationWarning

from .errors import DecodeError, IllegalParameter

# cryptography 50 deprecates finite-field DH as a whole and warns when its names are looked
# up; RFC 7919 DHE is still TLS 1.2, so the names are taken once, here, with that warning
# silenced (at import time, under the import lock: no other thread sees the filter change).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from cryptography.hazmat.primitives.asymmetric.dh import (
        DHParameterNumbers,
        DHPrivateKey,
        DHPrivateNumbers,
        DHPublicNumbers,
    )

__all__ = [
    "FFDHE_GROUPS",
    "DHPrivateKey",
    "FFDHEGroup",
    "check_public_value",
    "export_private_key",
    "generate_private_key",
    "group_for_params",
    "import_private_key",
    "is_dh_private_key",
    "parameters_pem",
    "shared_secret",
]


def _hex(text: str) -> int:
    return int("".join(text.split()), 16)


@dataclass(frozen=True)
class FFDHEGroup:
    """One RFC 7919 group: its supported_groups code point, prime and generator."""

    name: str
    code: int
    p: int
    g: int

    @property
    def size(self) -> int:
        """The prime's length in bytes: every public value is sent left-padded to it."""
        return (self.p.bit_length() + 7) // 8

    @property
    def p_bytes(self) -> bytes:
        return self.p.to_bytes(self.size, "big")

    @property
    def g_bytes(self) -> bytes:
        return self.g.to_bytes(1, "big")


# RFC 7919 Appendix A.1 and A.2, copied from the RFC's hexadecimal; tests/kdf/test_dhe.py
# recomputes both from the RFC's formula p = 2^b - 2^{b-64} + {[2^{b-130} e] + X} * 2^64 - 1.
_FFDHE2048_P = _hex(
    """
    FFFFFFFF FFFFFFFF ADF85458 A2BB4A9A AFDC5620 273D3CF1 D8B9C583 CE2D3695
    A9E13641 146433FB CC939DCE 249B3EF9 7D2FE363 630C75D8 F681B202 AEC4617A
    D3DF1ED5 D5FD6561 2433F51F 5F066ED0 85636555 3DED1AF3 B557135E 7F57C935
    984F0C70 E0E68B77 E2A689DA F3EFE872 1DF158A1 36ADE735 30ACCA4F 483A797A
    BC0AB182 B324FB61 D108A94B B2C8E3FB B96ADAB7 60D7F468 1D4F42A3 DE394DF4
    AE56EDE7 6372BB19 0B07A7C8 EE0A6D70 9E02FCE1 CDF7E2EC C03404CD 28342F61
    9172FE9C E98583FF 8E4F1232 EEF28183 C3FE3B1B 4C6FAD73 3BB5FCBC 2EC22005
    C58EF183 7D1683B2 C6F34A26 C1B2EFFA 886B4238 61285C97 FFFFFFFF FFFFFFFF
    """
)
_FFDHE3072_P = _hex(
    """
    FFFFFFFF FFFFFFFF ADF85458 A2BB4A9A AFDC5620 273D3CF1 D8B9C583 CE2D3695
    A9E13641 146433FB CC939DCE 249B3EF9 7D2FE363 630C75D8 F681B202 AEC4617A
    D3DF1ED5 D5FD6561 2433F51F 5F066ED0 85636555 3DED1AF3 B557135E 7F57C935
    984F0C70 E0E68B77 E2A689DA F3EFE872 1DF158A1 36ADE735 30ACCA4F 483A797A
    BC0AB182 B324FB61 D108A94B B2C8E3FB B96ADAB7 60D7F468 1D4F42A3 DE394DF4
    AE56EDE7 6372BB19 0B07A7C8 EE0A6D70 9E02FCE1 CDF7E2EC C03404CD 28342F61
    9172FE9C E98583FF 8E4F1232 EEF28183 C3FE3B1B 4C6FAD73 3BB5FCBC 2EC22005
    C58EF183 7D1683B2 C6F34A26 C1B2EFFA 886B4238 611FCFDC DE355B3B 6519035B
    BC34F4DE F99C0238 61B46FC9 D6E6C907 7AD91D26 91F7F7EE 598CB0FA C186D91C
    AEFE1309 85139270 B4130C93 BC437944 F4FD4452 E2D74DD3 64F2E21E 71F54BFF
    5CAE82AB 9C9DF69E E86D2BC5 22363A0D ABC52197 9B0DEADA 1DBF9A42 D5C4484E
    0ABCD06B FA53DDEF 3C1B20EE 3FD59D7C 25E41D2B 66C62E37 FFFFFFFF FFFFFFFF
    """
)

#: By supported_groups code point (RFC 7919 §6: ffdhe2048 = 256, ffdhe3072 = 257).
FFDHE_GROUPS: dict[int, FFDHEGroup] = {
    256: FFDHEGroup("ffdhe2048", 256, _FFDHE2048_P, 2),
    257: FFDHEGroup("ffdhe3072", 257, _FFDHE3072_P, 2),
}


def group_for_params(p: bytes, g: bytes) -> FFDHEGroup | None:
    """The RFC 7919 group whose prime and generator are exactly these encodings, or None."""
    for group in FFDHE_GROUPS.values():
        # Public values: an ordinary comparison reveals nothing.
        if p == group.p_bytes and g == group.g_bytes:
            return group
    return None


def parameters_pem(group: FFDHEGroup) -> bytes:
    """The group as PKCS#3 DHParameter PEM, for an OpenSSL server's ``load_dh_params``."""
    params = DHParameterNumbers(group.p, group.g).parameters()
    return params.parameter_bytes(Encoding.PEM, ParameterFormat.PKCS3)


def generate_private_key(group: FFDHEGroup) -> DHPrivateKey:
    """A fresh ephemeral key in ``group``; OpenSSL sizes the private exponent for the
    group's strength (RFC 7919 §5.2)."""
    return DHParameterNumbers(group.p, group.g).parameters().generate_private_key()


def export_private_key(key: DHPrivateKey) -> bytes:
    """The private exponent, big-endian, for a store that keeps a handshake between requests
    (it must encrypt it at rest)."""
    x = key.private_numbers().x
    return x.to_bytes((x.bit_length() + 7) // 8, "big")


def import_private_key(group: FFDHEGroup, data: bytes) -> DHPrivateKey:
    """The key :func:`export_private_key` wrote (not through PKCS#8: loading a DH key that way
    warns). Raises ValueError for an exponent that is no private key in ``group``."""
    x = int.from_bytes(data, "big")
    if not 1 < x < group.p - 1:
        raise ValueError(f"not a {group.name} private key")
    params = DHParameterNumbers(group.p, group.g)
    y = pow(group.g, x, group.p)
    return DHPrivateNumbers(x, DHPublicNumbers(y, params)).private_key()


def is_dh_private_key(key: object) -> bool:
    return isinstance(key, DHPrivateKey)


def public_bytes(group: FFDHEGroup, key: DHPrivateKey) -> bytes:
    """The public value, left-padded with zeros to the prime's length (as OpenSSL sends it:
    some stacks mishandle a shorter value)."""
    return key.public_key().public_numbers().y.to_bytes(group.size, "big")


def check_public_value(group: FFDHEGroup, data: bytes) -> int:
    """The peer's public value as an integer, after RFC 7919 §5.1's check.

    Raises:
        DecodeError: empty (dh_Ys and dh_Yc are ``<1..2^16-1>``) or longer than the prime.
        IllegalParameter: not 1 < y < p - 1 (0, 1 and p - 1 give a secret an attacker knows).
    """
    if not data:
        raise DecodeError("a DH public value is 1 to 65535 bytes (RFC 5246 §7.4.3)")
    if len(data) > group.size:
        raise DecodeError(f"a {group.name} public value is at most {group.size} bytes")
    y = int.from_bytes(data, "big")
    if not 1 < y < group.p - 1:
        raise IllegalParameter("the DH public value is not in 2..p-2 (RFC 7919 §5.1)")
    return y


def shared_secret(group: FFDHEGroup, key: DHPrivateKey, peer_public: bytes) -> bytes:
    """The pre-master secret: Z = peer^x mod p with its leading zero bytes stripped
    (RFC 5246 §8.1.2; cryptography returns Z left-padded to the prime's length)."""
    y = check_public_value(group, peer_public)
    peer = DHPublicNumbers(y, DHParameterNumbers(group.p, group.g)).public_key()
    z = key.exchange(peer)
    stripped = z.lstrip(b"\x00")
    if not stripped:  # only a y outside the checked range gives Z = 0
        raise IllegalParameter("DH with this public value gives no shared secret")
    return stripped
