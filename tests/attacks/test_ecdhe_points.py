"""Invalid ECDH public keys in the client's ClientKeyExchange, against server_svc over HTTP.

An invalid-curve or small-subgroup point lets a client learn bits of the server's private
key from the shared secrets it makes (Biehl et al. 2000; Jager et al. 2015). RFC 8422 §5.11
and RFC 7748 §6.1 tell the server to validate the point. kdf_lib.kex does; here that shows
over HTTP: the point is refused with illegal_parameter or decode_error, the handshake
fails for good, and no master secret or key is ever derived from it.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from helpers.peer import ECDHE_SUITE, Peer

from kdf_lib import kex
from kdf_lib.kex import NamedGroup
from kdf_lib.messages import ClientKeyExchange

P256 = 2**256 - 2**224 + 2**192 + 2**96 - 1
X25519_P = 2**255 - 19


def _point(curve: ec.EllipticCurve, form: PublicFormat = PublicFormat.UncompressedPoint) -> bytes:
    return ec.generate_private_key(curve).public_key().public_bytes(Encoding.X962, form)


def _le(value: int) -> bytes:
    return value.to_bytes(32, "little")


def _p256_points() -> dict[str, tuple[bytes, str]]:
    good = _point(ec.SECP256R1())
    x, y = good[1:33], good[33:]
    off_curve = good[:-1] + bytes((good[-1] ^ 0x01,))
    return {
        "off the curve": (off_curve, "illegal_parameter"),
        "x and y zero": (b"\x04" + bytes(64), "illegal_parameter"),
        "x equal to p": (b"\x04" + P256.to_bytes(32, "big") + y, "illegal_parameter"),
        "compressed, even y": (
            _point(ec.SECP256R1(), PublicFormat.CompressedPoint),
            "illegal_parameter",
        ),
        "compressed 02 prefix": (b"\x02" + x, "illegal_parameter"),
        "compressed 03 prefix": (b"\x03" + x, "illegal_parameter"),
        "hybrid 06 prefix": (b"\x06" + x + y, "illegal_parameter"),
        "identity (one zero byte)": (b"\x00", "illegal_parameter"),
        "identity (65 zero bytes)": (bytes(65), "illegal_parameter"),
        "one byte short": (good[:-1], "decode_error"),
        "one byte long": (good + b"\x00", "decode_error"),
        "x only after 04": (b"\x04" + x, "decode_error"),
        "a secp384r1 point": (_point(ec.SECP384R1()), "decode_error"),
    }


# RFC 7748 §6.1 and the well-known list of x25519 points of small order (libsodium, Bernstein).
X25519_LOW_ORDER = {
    "zero": bytes(32),
    "one": _le(1),
    "order 8 (a)": bytes.fromhex(
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
    ),
    "order 8 (b)": bytes.fromhex(
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"
    ),
    "p - 1": _le(X25519_P - 1),
    "p": _le(X25519_P),
    "p + 1": _le(X25519_P + 1),
    "zero with the top bit set": _le(2**255),
    "one with the top bit set": _le(2**255 + 1),
}


def _x25519_points() -> dict[str, tuple[bytes, str]]:
    points = {name: (value, "illegal_parameter") for name, value in X25519_LOW_ORDER.items()}
    points["31 bytes"] = (bytes(range(1, 32)), "decode_error")
    points["33 bytes"] = (bytes(range(1, 34)), "decode_error")
    points["a secp256r1 point"] = (_point(ec.SECP256R1()), "decode_error")
    return points


def _p384_points() -> dict[str, tuple[bytes, str]]:
    good = _point(ec.SECP384R1())
    return {
        "off the curve": (good[:-1] + bytes((good[-1] ^ 0x01,)), "illegal_parameter"),
        "compressed": (_point(ec.SECP384R1(), PublicFormat.CompressedPoint), "illegal_parameter"),
        "a secp256r1 point": (_point(ec.SECP256R1()), "decode_error"),
    }


CASES = [
    (group, name, point, code)
    for group, points in (
        (NamedGroup.secp256r1, _p256_points()),
        (NamedGroup.x25519, _x25519_points()),
        (NamedGroup.secp384r1, _p384_points()),
    )
    for name, (point, code) in sorted(points.items())
]


#: The server's trace steps that exist only once a pre-master secret was accepted.
DERIVATIONS = {"ECDH shared secret", "master secret", "master secret (extended)", "key expansion"}


def _ready(peer_factory, group: NamedGroup) -> Peer:
    peer = peer_factory(ECDHE_SUITE, groups=(group,))
    assert peer.hello().status == 200
    assert peer.hello_json["server_key_exchange"]["named_curve"] == group.name
    peer.prepare_finish()
    return peer


@pytest.mark.parametrize(
    ("group", "name", "point", "code"),
    CASES,
    ids=[f"{group.name}-{name}" for group, name, _, _ in CASES],
)
def test_an_invalid_client_point_is_refused_before_any_secret(peer, group, name, point, code):
    attacker = _ready(peer, group)
    answer = attacker.finish(
        attacker.finish_body(client_key_exchange=ClientKeyExchange(public_key=point))
    )
    assert (answer.status, answer.code) == (400, code)
    view = attacker.server_view()
    assert (view["state"], view["error"]) == ("failed", code)
    actions = [step["action"] for step in view["trace"]]
    assert actions[-1] == "abort"
    # No shared secret was accepted, so no master secret, key block or key exists.
    assert not DERIVATIONS & set(actions)
    assert view["fingerprints"] is None and view["key_block_layout"] is None
    # The handshake is over: the client's real second flight is refused as well.
    assert attacker.finish(attacker.finish_body()).code == "unexpected_message"


CURVES = [g for g in NamedGroup if not kex.is_ffdhe(g)]


@pytest.mark.parametrize("group", CURVES, ids=[g.name for g in CURVES])
def test_the_client_own_point_completes_the_handshake(peer, group):
    """The control: the same steps with the client's real point succeed on every group."""
    honest = _ready(peer, group)
    assert honest.finish().status == 200
    actions = [step["action"] for step in honest.server_view()["trace"]]
    assert DERIVATIONS - {"master secret"} <= set(actions)


def test_another_valid_point_is_only_a_wrong_secret(peer):
    """A valid point that is not the client's: accepted as a point, then Finished fails."""
    attacker = _ready(peer, NamedGroup.secp256r1)
    stranger = ClientKeyExchange(public_key=_point(ec.SECP256R1()))
    answer = attacker.finish(attacker.finish_body(client_key_exchange=stranger))
    assert answer.code == "bad_record_mac"
