"""A client's DH public value that gives a known secret (0, 1, p-1, p and above) is refused by
server_svc over HTTP before any secret is derived (RFC 7919 §5.1)."""

from __future__ import annotations

import pytest
from helpers.peer import Peer

from kdf_lib import ffdhe
from kdf_lib.kex import NamedGroup
from kdf_lib.messages import ClientKeyExchange

DHE_SUITE = "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"
P = ffdhe.FFDHE_GROUPS[NamedGroup.ffdhe2048].p
CASES = [
    ("zero", (0).to_bytes(256, "big"), "illegal_parameter"),
    ("one", (1).to_bytes(256, "big"), "illegal_parameter"),
    ("p-1", (P - 1).to_bytes(256, "big"), "illegal_parameter"),
    ("p", P.to_bytes(256, "big"), "illegal_parameter"),
    ("longer than p", b"\x01" + bytes(256), "decode_error"),
]
#: The server's trace steps that exist only once a pre-master secret was accepted.
DERIVATIONS = {"DH shared secret", "master secret", "master secret (extended)", "key expansion"}


def _ready(peer_factory) -> Peer:
    peer = peer_factory(DHE_SUITE)
    assert peer.hello().status == 200
    assert peer.hello_json["server_key_exchange"]["dh_g"] == "02"
    peer.prepare_finish()
    return peer


@pytest.mark.parametrize(("name", "value", "code"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_client_dh_value_is_refused_before_any_secret(peer, name, value, code):
    attacker = _ready(peer)
    answer = attacker.finish(
        attacker.finish_body(client_key_exchange=ClientKeyExchange(dh_public=value))
    )
    assert (answer.status, answer.code) == (400, code)
    view = attacker.server_view()
    assert (view["state"], view["error"]) == ("failed", code)
    actions = [step["action"] for step in view["trace"]]
    assert not DERIVATIONS & set(actions)
    assert view["fingerprints"] is None


def test_the_client_own_dh_value_completes_the_handshake(peer):
    honest = _ready(peer)
    assert honest.finish().status == 200
    actions = [step["action"] for step in honest.server_view()["trace"]]
    assert "DH shared secret" in actions and "key expansion" in actions
