"""ECDHE_ECDSA suites (RFC 8422, RFC 5289, RFC 7905): the server's ECDSA certificate beside its
RSA one, chosen by suite; ECDSA-signed ServerKeyExchange; the client's certificate checks."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from helpers.pair import client_config, connect
from helpers.pki import NOW, SERVER_NAME, build_certificate, ecdsa_identity, identity, server_config

from kdf_lib import kex, pki
from kdf_lib.errors import DecryptError, HandshakeFailure, IllegalParameter, UnsupportedCertificate
from kdf_lib.handshake import ClientConfig, ClientHandshake, ServerConfig, ServerHandshake
from kdf_lib.kex import NamedGroup, SignatureScheme
from kdf_lib.messages import ClientHello, ServerFlight
from kdf_lib.suites import SUITES, Authentication, KeyExchange

ECDSA_SUITES = [s for s in SUITES.values() if s.authentication is Authentication.ECDSA]
GCM = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"


def _flight(client: ClientHandshake, config: ServerConfig | None = None) -> ServerFlight:
    return ServerHandshake(config or server_config()).receive_client_hello(client.client_hello())


def _client(*suites: str, **fields: object) -> ClientHandshake:
    return ClientHandshake(dataclasses.replace(client_config(*suites), **fields))


def test_the_table_has_the_five_rfc_ecdsa_suites_with_their_rsa_twins_parameters() -> None:
    codes = {s.name: s.code for s in ECDSA_SUITES}
    assert codes == {
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": 0xC023,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384": 0xC024,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xC02B,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": 0xC02C,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA9,
    }
    for suite in ECDSA_SUITES:
        twin = SUITES[suite.name.replace("ECDSA", "RSA")]
        assert suite.key_exchange is KeyExchange.ECDHE is twin.key_exchange
        assert (
            dataclasses.replace(
                suite, name=twin.name, code=twin.code, authentication=Authentication.RSA
            )
            == twin
        )
        assert suite.describe()["authentication"] == "ecdsa"


@pytest.mark.parametrize("suite", ECDSA_SUITES, ids=lambda s: s.name)
def test_every_ecdsa_suite_handshakes_with_the_ecdsa_certificate(suite) -> None:
    client = _client(suite.name)
    flight = _flight(client)
    assert flight.server_hello.cipher_suite is suite
    leaf = pki.load_certificate_chain(flight.certificate_pem[0])[0]
    assert leaf == ecdsa_identity().certificate
    ske = flight.server_key_exchange
    assert ske is not None and ske.signature_algorithm is SignatureScheme.ecdsa_secp256r1_sha256
    # RFC 8422 §5.4: the signature is a DER Ecdsa-Sig-Value, (r, s) on P-256.
    r, s = decode_dss_signature(ske.signature)
    assert 0 < r < 2**256 and 0 < s < 2**256
    pair = connect(suite.name)
    assert pair.server_conn.open(pair.client_conn.seal(b"ping")) == b"ping"
    assert pair.client_conn.open(pair.server_conn.seal(b"pong")) == b"pong"


def test_the_rsa_suites_still_get_the_rsa_certificate_from_a_dual_certificate_server() -> None:
    client = _client("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    flight = _flight(client)
    assert pki.load_certificate_chain(flight.certificate_pem[0])[0] == identity()[1].certificate
    assert flight.server_key_exchange is not None
    assert not kex.scheme_uses_ecdsa(flight.server_key_exchange.signature_algorithm)


def test_a_server_without_an_ecdsa_certificate_never_chooses_an_ecdsa_suite() -> None:
    rsa_only = server_config(rsa_only=True)
    with pytest.raises(HandshakeFailure):
        _flight(_client(GCM), rsa_only)
    flight = _flight(_client(GCM, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), rsa_only)
    assert flight.server_hello.cipher_suite.name == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def test_the_server_signs_with_the_hash_the_client_prefers_whatever_the_curve() -> None:
    # TLS 1.2: ecdsa_secp384r1_sha384 is {sha384, ecdsa}; the lab's P-256 key signs with it.
    client = _client(GCM, signature_schemes=(SignatureScheme.ecdsa_secp384r1_sha384,))
    flight = _flight(client)
    assert flight.server_key_exchange is not None
    assert flight.server_key_exchange.signature_algorithm is SignatureScheme.ecdsa_secp384r1_sha384
    client.receive_server_flight(flight)  # verifies


def test_no_ecdsa_suite_without_an_ecdsa_scheme_offered() -> None:
    rsa_schemes = tuple(s for s in SignatureScheme if not kex.scheme_uses_ecdsa(s))
    with pytest.raises(HandshakeFailure):
        _flight(_client(GCM, signature_schemes=rsa_schemes))


def test_no_ecdsa_suite_when_the_client_cannot_take_the_certificates_curve() -> None:
    # RFC 8422 §5.1: the P-256 certificate needs secp256r1 in the client's groups.
    with pytest.raises(HandshakeFailure):
        _flight(_client(GCM, groups=(NamedGroup.x25519, NamedGroup.secp384r1)))
    p384 = pki.issue_ecdsa_server_certificate(
        identity()[0], SERVER_NAME, now=NOW, curve="secp384r1"
    )
    config = server_config(ecdsa=p384)
    client = _client(GCM, groups=(NamedGroup.x25519, NamedGroup.secp384r1))
    flight = _flight(client, config)
    assert flight.server_key_exchange is not None
    assert flight.server_key_exchange.group is NamedGroup.x25519
    client.receive_server_flight(flight)


def test_the_client_refuses_an_rsa_certificate_for_an_ecdsa_suite() -> None:
    client = _client(GCM, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    flight = _flight(_client("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"))
    hello = dataclasses.replace(flight.server_hello, cipher_suite=SUITES[GCM])
    client.client_hello()
    with pytest.raises(UnsupportedCertificate, match="EC certificate key"):
        client.receive_server_flight(dataclasses.replace(flight, server_hello=hello))


def test_the_client_refuses_an_ecdsa_certificate_for_an_rsa_suite() -> None:
    flight = _flight(_client(GCM))
    rsa_suite = SUITES["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    client = _client(GCM, rsa_suite.name)
    client.client_hello()
    hello = dataclasses.replace(flight.server_hello, cipher_suite=rsa_suite)
    with pytest.raises(UnsupportedCertificate, match="must be RSA"):
        client.receive_server_flight(dataclasses.replace(flight, server_hello=hello))


def test_the_client_refuses_a_scheme_that_does_not_fit_the_certificate_key() -> None:
    client = _client(GCM)
    flight = _flight(client)
    assert flight.server_key_exchange is not None
    ske = dataclasses.replace(
        flight.server_key_exchange, signature_algorithm=SignatureScheme.rsa_pss_rsae_sha256
    )
    with pytest.raises(IllegalParameter):
        client.receive_server_flight(dataclasses.replace(flight, server_key_exchange=ske))


@pytest.mark.parametrize("damage", ["flip", "truncate", "not_der"])
def test_a_bad_ecdsa_signature_is_decrypt_error(damage: str) -> None:
    client = _client(GCM)
    flight = _flight(client)
    assert flight.server_key_exchange is not None
    signature = flight.server_key_exchange.signature
    damaged = {
        "flip": signature[:-1] + bytes([signature[-1] ^ 1]),
        "truncate": signature[:-1],
        "not_der": b"\x00" * len(signature),
    }[damage]
    ske = dataclasses.replace(flight.server_key_exchange, signature=damaged)
    with pytest.raises(DecryptError):
        client.receive_server_flight(dataclasses.replace(flight, server_key_exchange=ske))


def test_an_ecdsa_leaf_without_digital_signature_key_usage_is_refused() -> None:
    ca = identity()[0]
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = build_certificate(key, ca, digital_signature=False, key_encipherment=False)
    with pytest.raises(UnsupportedCertificate, match="digitalSignature"):
        pki.verify_server_chain(
            [leaf],
            [ca.certificate],
            SERVER_NAME,
            now=NOW,
            key_exchange="ecdhe",
            authentication="ecdsa",
        )
    good = build_certificate(key, ca, key_encipherment=False)
    assert (
        pki.verify_server_chain(
            [good],
            [ca.certificate],
            SERVER_NAME,
            now=NOW,
            key_exchange="ecdhe",
            authentication="ecdsa",
        )
        == good
    )


def test_an_ecdsa_leaf_on_another_curve_is_refused() -> None:
    ca = identity()[0]
    leaf = build_certificate(ec.generate_private_key(ec.SECP521R1()), ca, key_encipherment=False)
    with pytest.raises(UnsupportedCertificate, match="secp521r1"):
        pki.verify_server_chain(
            [leaf],
            [ca.certificate],
            SERVER_NAME,
            now=NOW,
            key_exchange="ecdhe",
            authentication="ecdsa",
        )


def test_the_issued_ecdsa_certificate_signs_only() -> None:
    issued = ecdsa_identity()
    description = pki.describe_certificate(issued.certificate)
    assert description["public_key_type"] == "EC" and description["public_key_size"] == 256
    assert description["key_usage"] == ["digitalSignature"]
    assert description["extended_key_usage"] == ["serverAuth"]
    assert issued.certificate.issuer == identity()[0].certificate.subject
    assert "private_key" not in repr(issued)


def test_ec_private_keys_load_only_on_the_lab_curves() -> None:
    issued = ecdsa_identity()
    loaded = pki.load_ec_private_key(issued.private_key_pem())
    assert loaded.public_key() == issued.private_key.public_key()
    with pytest.raises(ValueError, match="EC key"):
        pki.load_ec_private_key(identity()[1].private_key_pem())
    other = pki.IssuedEcdsa(issued.certificate, ec.generate_private_key(ec.SECP521R1()))
    with pytest.raises(ValueError, match="secp521r1"):
        pki.load_ec_private_key(other.private_key_pem())


def test_a_server_config_refuses_a_half_or_mismatched_ecdsa_identity() -> None:
    ca, server = identity()
    issued = ecdsa_identity()
    with pytest.raises(ValueError, match="both"):
        ServerConfig(
            (server.certificate,), server.private_key, ecdsa_certificate_chain=(issued.certificate,)
        )
    with pytest.raises(ValueError, match="does not match"):
        ServerConfig(
            (server.certificate,),
            server.private_key,
            ecdsa_certificate_chain=(issued.certificate,),
            ecdsa_private_key=ec.generate_private_key(ec.SECP256R1()),
        )
    assert isinstance(server.private_key, rsa.RSAPrivateKey) and ca


def test_a_saved_ecdsa_handshake_goes_on_in_another_process() -> None:
    client = ClientHandshake(
        ClientConfig((identity()[0].certificate,), SERVER_NAME, (SUITES[GCM],))
    )
    server = ServerHandshake(server_config())
    flight = server.receive_client_hello(client.client_hello())
    restored = ServerHandshake.from_state(server.to_state(), server_config())
    finish = client.receive_server_flight(flight)
    reply = restored.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    client.receive_server_finished(reply, restored.new_session_ticket)
    assert client.connection is not None and restored.connection is not None


def test_a_hello_without_signature_algorithms_still_means_the_four_rsa_schemes() -> None:
    # Peers written before ECDSA omit the field: the hello they encode must stay the same.
    hello = ClientHello.from_json({"client_random": "00" * 32, "cipher_suites": [GCM]})
    assert hello.extensions.signature_algorithms == (
        SignatureScheme.rsa_pss_rsae_sha256,
        SignatureScheme.rsa_pkcs1_sha256,
        SignatureScheme.rsa_pss_rsae_sha384,
        SignatureScheme.rsa_pkcs1_sha384,
    )
    assert client_config(GCM).signature_schemes[-2:] == (
        SignatureScheme.ecdsa_secp256r1_sha256,
        SignatureScheme.ecdsa_secp384r1_sha384,
    )
