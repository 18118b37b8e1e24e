"""Finite-field DHE: the RFC 7919 groups, the public value check, the leading-zero strip of
RFC 5246 §8.1.2 (a vector), the codec, negotiation through supported_groups, and the machines."""

from __future__ import annotations

import dataclasses
import json
import secrets

import pytest
from helpers.pair import client_config, connect
from helpers.pki import server_config

from kdf_lib import ffdhe, kex
from kdf_lib.errors import DecodeError, HandshakeFailure, IllegalParameter, InsufficientSecurity
from kdf_lib.handshake import ClientHandshake, ServerHandshake, ServerState
from kdf_lib.kex import NamedGroup, SignatureScheme
from kdf_lib.messages import ClientExtensions, ClientKeyExchange, ServerKeyExchange
from kdf_lib.prf import master_secret
from kdf_lib.suites import SUITES, KeyExchange
from kdf_lib.trace import StepKind

from .vectors import load, params, unhex

DHE_SUITES = [s.name for s in SUITES.values() if s.key_exchange is KeyExchange.DHE]
FFDHE2048 = ffdhe.FFDHE_GROUPS[NamedGroup.ffdhe2048]
FFDHE3072 = ffdhe.FFDHE_GROUPS[NamedGroup.ffdhe3072]


def _e_times_2_to(bits: int) -> int:
    """floor(2^bits * e), from the series sum 1/k! in integers (64 guard bits)."""
    total, term, k = 0, 1 << (bits + 64), 0
    while term:
        total += term
        k += 1
        term //= k
    return total >> 64


def _probably_prime(n: int, rounds: int = 8) -> bool:
    """Miller-Rabin with fixed small bases (a test of constants, not of secrets)."""
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19)[:rounds]:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize(
    ("group", "bits", "constant"),
    [(FFDHE2048, 2048, 560316), (FFDHE3072, 3072, 2625351)],
    ids=["ffdhe2048", "ffdhe3072"],
)
def test_ffdhe_prime_is_rfc_7919_formula_and_a_safe_prime(
    group: ffdhe.FFDHEGroup, bits: int, constant: int
) -> None:
    # RFC 7919 Appendix A: p = 2^b - 2^{b-64} + {[2^{b-130} e] + X} * 2^64 - 1, g = 2.
    expected = 2**bits - 2 ** (bits - 64) + (_e_times_2_to(bits - 130) + constant) * 2**64 - 1
    assert group.p == expected
    assert group.g == 2
    assert group.size == bits // 8
    assert _probably_prime(group.p) and _probably_prime((group.p - 1) // 2)


@pytest.mark.parametrize("case", params(load("dhe_leading_zero")))
def test_pre_master_secret_strips_leading_zero_bytes_of_z(case: dict) -> None:
    group = ffdhe.FFDHE_GROUPS[NamedGroup[case["group"]]]
    client = ffdhe.import_private_key(group, unhex(case["client_private"]))
    server = ffdhe.import_private_key(group, unhex(case["server_private"]))
    assert ffdhe.public_bytes(group, client) == unhex(case["client_public"])
    assert ffdhe.public_bytes(group, server) == unhex(case["server_public"])
    pms = unhex(case["pre_master_secret"])
    assert unhex(case["z_padded"]) == b"\x00" + pms
    # cryptography hands back Z left-padded to the prime's length: stripping is ours to do.
    assert client.exchange(server.public_key()) == unhex(case["z_padded"])
    assert ffdhe.shared_secret(group, client, unhex(case["server_public"])) == pms
    assert ffdhe.shared_secret(group, server, unhex(case["client_public"])) == pms
    randoms = unhex(case["client_random"]), unhex(case["server_random"])
    expected = unhex(case["master_secret"])
    assert master_secret(pms, *randoms, case["hash"]) == expected
    not_stripped = master_secret(unhex(case["z_padded"]), *randoms, case["hash"])
    assert not_stripped == unhex(case["master_secret_if_not_stripped"]) != expected


@pytest.mark.parametrize("name", ["zero", "one", "p-1", "p", "p+1"])
def test_public_value_outside_2_to_p_minus_2_is_illegal_parameter(name: str) -> None:
    p = FFDHE2048.p
    value = {"zero": 0, "one": 1, "p-1": p - 1, "p": p, "p+1": p + 1}[name]
    data = value.to_bytes(FFDHE2048.size + (name == "p+1"), "big")
    error = DecodeError if name == "p+1" else IllegalParameter
    with pytest.raises(error):
        ffdhe.check_public_value(FFDHE2048, data)
    assert ffdhe.check_public_value(FFDHE2048, (2).to_bytes(1, "big")) == 2
    assert ffdhe.check_public_value(FFDHE2048, (p - 2).to_bytes(256, "big")) == p - 2
    with pytest.raises(DecodeError):
        ffdhe.check_public_value(FFDHE2048, b"")


@pytest.mark.parametrize("suite", DHE_SUITES)
def test_every_dhe_suite_completes_and_both_sides_agree(suite: str) -> None:
    pair = connect(suite)
    client_record = pair.client_conn.seal(b"ping")
    assert pair.server_conn.open(client_record) == b"ping"
    server_kinds = [step.kind for step in pair.server.trace.steps]
    client_kinds = [step.kind for step in pair.client.trace.steps]
    assert StepKind.DH_SHARED_SECRET in server_kinds
    assert StepKind.SEND_DH_PUBLIC_KEY in client_kinds
    hello = pair.client.hello
    assert hello is not None
    # Only the finite-field groups are offered with DHE-only suites (RFC 7919 §3).
    assert hello.extensions.supported_groups == (NamedGroup.ffdhe2048, NamedGroup.ffdhe3072)


def _flight(client: ClientHandshake, server: ServerHandshake) -> ServerKeyExchange:
    flight = server.receive_client_hello(client.client_hello())
    assert flight.server_key_exchange is not None
    return flight.server_key_exchange


def test_server_takes_the_clients_first_acceptable_group_and_signs_the_dh_params() -> None:
    config = dataclasses.replace(
        client_config(DHE_SUITES[0]), groups=(NamedGroup.ffdhe3072, NamedGroup.ffdhe2048)
    )
    client, server = ClientHandshake(config), ServerHandshake(server_config())
    ske = _flight(client, server)
    assert ske.group is NamedGroup.ffdhe3072
    assert len(ske.public_key) == FFDHE3072.size
    # ServerDHParams: dh_p, dh_g, dh_Ys, each with a 2-byte length (RFC 5246 §7.4.3).
    assert ske.params == (
        b"\x01\x80" + FFDHE3072.p_bytes + b"\x00\x01\x02" + b"\x01\x80" + ske.public_key
    )
    key = server.config.private_key
    assert client.hello is not None and server.server_hello is not None
    kex.verify_server_params(
        key.public_key(),
        ske.signature_algorithm,
        ske.signature,
        client.hello.random,
        server.server_hello.random,
        ske.params,
    )


def test_no_acceptable_ffdhe_group_means_no_dhe_suite() -> None:
    server_cfg = dataclasses.replace(server_config(), groups=(NamedGroup.ffdhe3072,))
    only_2048 = (NamedGroup.ffdhe2048,)
    dhe_only = dataclasses.replace(client_config(DHE_SUITES[0]), groups=only_2048)
    server = ServerHandshake(server_cfg)
    with pytest.raises(HandshakeFailure):
        server.receive_client_hello(ClientHandshake(dhe_only).client_hello())
    # RFC 7919 §4: another suite is chosen when there is one.
    both = client_config(DHE_SUITES[0], "TLS_RSA_WITH_AES_128_GCM_SHA256")
    flight = ServerHandshake(server_cfg).receive_client_hello(
        ClientHandshake(dataclasses.replace(both, groups=only_2048)).client_hello()
    )
    assert flight.server_hello.cipher_suite.key_exchange is KeyExchange.RSA


def test_server_key_exchange_codec_round_trips_and_refuses_unknown_groups() -> None:
    public = secrets.token_bytes(256)
    ske = ServerKeyExchange(
        NamedGroup.ffdhe2048, public, SignatureScheme.rsa_pss_rsae_sha256, b"sig"
    )
    wire = ske.to_json()
    assert set(wire) == {"dh_p", "dh_g", "dh_Ys", "signature_algorithm", "signature"}
    assert wire["dh_g"] == "02" and wire["dh_p"] == FFDHE2048.p_bytes.hex()
    assert ServerKeyExchange.from_json(json.loads(json.dumps(wire))) == ske
    # A prime of the server's own: the client offered RFC 7919 groups and refuses it.
    other = dict(wire, dh_p=(FFDHE2048.p - 2**64).to_bytes(256, "big").hex())
    with pytest.raises(InsufficientSecurity):
        ServerKeyExchange.from_json(other)
    with pytest.raises(DecodeError):
        ServerKeyExchange.from_json(dict(wire, dh_Ys=""))


def test_client_key_exchange_carries_dh_yc_with_a_two_byte_length() -> None:
    cke = ClientKeyExchange(dh_public=b"\x05" * 256)
    assert cke.encode()[4:6] == b"\x01\x00"
    assert cke.to_json() == {"dh_Yc": "05" * 256}
    assert ClientKeyExchange.from_json({"dh_Yc": "05" * 256}) == cke
    with pytest.raises(DecodeError):
        ClientKeyExchange.from_json({"dh_Yc": "05", "public_key": "05"})


@pytest.mark.parametrize("value", [1, FFDHE2048.p - 1])
def test_server_refuses_a_client_value_outside_the_range(value: int) -> None:
    client, server = ClientHandshake(client_config(DHE_SUITES[0])), ServerHandshake(server_config())
    finish = client.receive_server_flight(server.receive_client_hello(client.client_hello()))
    bad = ClientKeyExchange(dh_public=value.to_bytes(256, "big"))
    with pytest.raises(IllegalParameter):
        server.receive_client_finish(bad, finish.finished_record)
    assert server.state is ServerState.FAILED


def test_client_refuses_a_server_value_outside_the_range() -> None:
    client, server = ClientHandshake(client_config(DHE_SUITES[0])), ServerHandshake(server_config())
    flight = server.receive_client_hello(client.client_hello())
    assert flight.server_key_exchange is not None
    bad = dataclasses.replace(flight.server_key_exchange, public_key=b"\x01")
    with pytest.raises(IllegalParameter):
        client.receive_server_flight(dataclasses.replace(flight, server_key_exchange=bad))


def test_server_saved_between_flights_keeps_its_dh_exponent() -> None:
    client, server = ClientHandshake(client_config(DHE_SUITES[0])), ServerHandshake(server_config())
    flight = server.receive_client_hello(client.client_hello())
    saved = server.to_state()
    restored = ServerHandshake.from_state(saved, server.config)
    finish = client.receive_server_flight(flight)
    reply = restored.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    connection = client.receive_server_finished(reply, restored.new_session_ticket)
    assert restored.connection is not None
    assert restored.connection.open(connection.seal(b"after restore")) == b"after restore"


def test_a_client_naming_no_ffdhe_group_gets_the_servers_and_refuses_it_unoffered() -> None:
    # RFC 7919 §4: the server still picks DHE for a client that names no finite-field group...
    config = dataclasses.replace(client_config(DHE_SUITES[0]), groups=(NamedGroup.x25519,))
    client, server = ClientHandshake(config), ServerHandshake(server_config())
    flight = server.receive_client_hello(client.client_hello())
    assert flight.server_hello.cipher_suite.name == DHE_SUITES[0]
    assert flight.server_key_exchange is not None
    assert flight.server_key_exchange.group is NamedGroup.ffdhe2048
    # ... and this client, which offered no such group, refuses it (RFC 7919 §3).
    with pytest.raises(InsufficientSecurity):
        client.receive_server_flight(flight)


def test_an_absent_supported_groups_in_json_means_the_three_curves() -> None:
    hello = ClientExtensions.from_json({})
    assert hello.supported_groups == (
        NamedGroup.x25519,
        NamedGroup.secp256r1,
        NamedGroup.secp384r1,
    )
    named = ClientExtensions.from_json({"supported_groups": ["ffdhe3072", "ffdhe2048"]})
    assert named.supported_groups == (NamedGroup.ffdhe3072, NamedGroup.ffdhe2048)
