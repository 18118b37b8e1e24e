"""Mutual TLS in kdf_lib (RFC 5246 §7.4.4 CertificateRequest, §7.4.6 the client's Certificate,
§7.4.8 CertificateVerify): both state machines in memory, the alerts, resumption, the ticket,
the codec, and a cross-check of the signed transcript and the EMS session hash against OpenSSL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ssl
from functools import lru_cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from helpers.pki import NOW, SERVER_NAME, identity

import kdf_lib
from kdf_lib import pki
from kdf_lib.client_auth import (
    ClientAuth,
    PeerIdentity,
    issue_client_certificate,
    issue_ecdsa_client_certificate,
    verify_certificate_verify,
)
from kdf_lib.errors import (
    DecodeError,
    DecryptError,
    HandshakeFailure,
    UnexpectedMessage,
    UnknownCA,
)
from kdf_lib.handshake import (
    ClientConfig,
    ClientHandshake,
    ServerConfig,
    ServerHandshake,
    ServerState,
    Session,
)
from kdf_lib.messages import (
    CertificateMessage,
    CertificateRequest,
    CertificateVerify,
    ClientCertificateType,
    ClientFinish,
    ServerFlight,
)
from kdf_lib.role import Role
from kdf_lib.suites import SUITES
from kdf_lib.tickets import TicketKey, TicketKeys, TicketState
from kdf_lib.trace import StepKind, Trace
from kdf_lib.wire import HandshakeType

ECDHE = SUITES["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
RSA = SUITES["TLS_RSA_WITH_AES_128_GCM_SHA256"]


@lru_cache(maxsize=1)
def client_identity() -> pki.Issued:
    """client_svc's certificate, issued by the run's CA (the server trusts it for clients)."""
    return issue_client_certificate(identity()[0], "client_svc", now=NOW)


@lru_cache(maxsize=1)
def foreign_client_identity() -> pki.Issued:
    """A client certificate from a CA the server does not trust."""
    foreign = pki.create_ca("Foreign CA", now=NOW)
    return issue_client_certificate(foreign, "client_svc", now=NOW)


def server_config(client_auth: ClientAuth = ClientAuth.REQUIRED) -> ServerConfig:
    ca, server = identity()
    return ServerConfig(
        (server.certificate,),
        server.private_key,
        client_auth=client_auth,
        client_trust_anchors=(ca.certificate,) if client_auth is not ClientAuth.NONE else (),
    )


def client_config(
    certificate: pki.Issued | None = None, *suites: object, tickets: bool = False
) -> ClientConfig:
    ca, _ = identity()
    chosen = tuple(s for s in suites if s is not None) or (ECDHE,)
    assert certificate is None or isinstance(certificate.private_key, rsa.RSAPrivateKey)
    return ClientConfig(
        (ca.certificate,),
        SERVER_NAME,
        chosen,  # type: ignore[arg-type]
        session_tickets=tickets,
        client_certificate_chain=(certificate.certificate,) if certificate else (),
        client_private_key=certificate.private_key if certificate else None,  # type: ignore[arg-type]
    )


@dataclasses.dataclass
class Run:
    client: ClientHandshake
    server: ServerHandshake
    flight: ServerFlight
    finish: ClientFinish


def start(
    client: ClientConfig,
    server: ServerConfig,
    *,
    resume: Session | None = None,
    sessions: dict[bytes, Session] | None = None,
    tickets: TicketKeys | None = None,
) -> Run:
    """The first three flights; the client's second flight is not yet delivered."""
    store = sessions if sessions is not None else {}
    client_machine = ClientHandshake(client, resume=resume, trace=Trace(Role.CLIENT))
    server_machine = ServerHandshake(
        server, lookup_session=store.get, tickets=tickets, trace=Trace(Role.SERVER)
    )
    flight = server_machine.receive_client_hello(client_machine.client_hello())
    finish = client_machine.receive_server_flight(flight)
    return Run(client_machine, server_machine, flight, finish)


def deliver(run: Run, finish: ClientFinish | None = None) -> None:
    """The client's second flight to the server, and the server's Finished back."""
    sent = finish or run.finish
    reply = run.server.receive_client_finish(
        sent.client_key_exchange,
        sent.finished_record,
        certificate_chain=sent.certificate_chain,
        certificate_verify=sent.certificate_verify,
    )
    if reply:
        run.client.receive_server_finished(reply, run.server.new_session_ticket)


def connect(client: ClientConfig, server: ServerConfig, **kwargs: object) -> Run:
    run = start(client, server, **kwargs)  # type: ignore[arg-type]
    deliver(run)
    return run


def message_types(transcript: bytes) -> list[HandshakeType]:
    types, offset = [], 0
    while offset < len(transcript):
        types.append(HandshakeType(transcript[offset]))
        offset += 4 + int.from_bytes(transcript[offset + 1 : offset + 4], "big")
    return types


def messages(transcript: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset < len(transcript):
        end = offset + 4 + int.from_bytes(transcript[offset + 1 : offset + 4], "big")
        out.append(transcript[offset:end])
        offset = end
    return out


# -- the full handshake ----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", [ECDHE, RSA], ids=lambda s: s.name)
def test_required_client_certificate_is_verified_and_becomes_the_session_identity(
    suite: object,
) -> None:
    run = connect(client_config(client_identity(), suite), server_config())
    expected = PeerIdentity.of(client_identity().certificate)
    assert run.server.state is ServerState.ESTABLISHED
    assert run.server.session is not None and run.client.session is not None
    assert run.server.session.client_identity == expected
    assert run.client.session.client_identity == expected
    assert run.client.transcript == run.server.transcript
    kinds = [step.kind for step in run.server.trace.steps]
    assert StepKind.SEND_CERTIFICATE_REQUEST in kinds
    assert StepKind.VERIFY_CLIENT_CERTIFICATE in kinds
    assert StepKind.VERIFY_CERTIFICATE_VERIFY in kinds
    client_kinds = [step.kind for step in run.client.trace.steps]
    for kind in (
        StepKind.RECEIVE_CERTIFICATE_REQUEST,
        StepKind.SEND_CLIENT_CERTIFICATE,
        StepKind.SEND_CERTIFICATE_VERIFY,
    ):
        assert kind in client_kinds
    for machine in (run.client, run.server):
        for step in machine.summary()["trace"]:
            assert list(step) == [
                "actor",
                "flight",
                "kind",
                "action",
                "purpose",
                "data",
                "elapsed_ms",
            ]


def test_messages_come_in_rfc_5246_order() -> None:
    T = HandshakeType  # noqa: N806 (a short alias)
    ecdhe = connect(client_config(client_identity(), ECDHE), server_config())
    assert message_types(ecdhe.server.transcript) == [
        T.client_hello,
        T.server_hello,
        T.certificate,
        T.server_key_exchange,
        T.certificate_request,
        T.server_hello_done,
        T.certificate,
        T.client_key_exchange,
        T.certificate_verify,
        T.finished,
        T.finished,
    ]
    rsa_run = connect(client_config(client_identity(), RSA), server_config())
    assert message_types(rsa_run.server.transcript)[2:5] == [
        T.certificate,
        T.certificate_request,
        T.server_hello_done,
    ]


def test_no_certificate_request_without_client_auth() -> None:
    run = connect(client_config(client_identity()), server_config(ClientAuth.NONE))
    assert run.flight.certificate_request is None
    assert run.finish.certificate_chain is None and run.finish.certificate_verify is None
    assert HandshakeType.certificate_request not in message_types(run.server.transcript)
    assert run.server.session is not None and run.server.session.client_identity is None


def test_extended_master_secret_hashes_up_to_client_key_exchange_not_certificate_verify() -> None:
    run = connect(client_config(client_identity()), server_config())
    step = next(s for s in run.server.trace.steps if s.kind is StepKind.EXTENDED_MASTER_SECRET)
    sent = messages(run.server.transcript)
    through_cke = b"".join(sent[:8])  # ClientHello .. ClientKeyExchange
    assert sent[7][0] == HandshakeType.client_key_exchange
    assert sent[8][0] == HandshakeType.certificate_verify
    assert step.data["session_hash"] == hashlib.sha256(through_cke).hexdigest()
    # and the CertificateVerify signs exactly the same bytes (RFC 5246 §7.4.8)
    cv_body = sent[8][4:]
    scheme = kdf_lib.kex.SignatureScheme(int.from_bytes(cv_body[:2], "big"))
    signature = cv_body[4:]
    public_key = client_identity().certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    verify_certificate_verify(public_key, scheme, signature, through_cke)
    with pytest.raises(DecryptError):
        verify_certificate_verify(public_key, scheme, signature, b"".join(sent[:7]))


# -- refusals --------------------------------------------------------------------------------------


def test_required_and_no_certificate_is_handshake_failure() -> None:
    run = start(client_config(None), server_config(ClientAuth.REQUIRED))
    assert run.finish.certificate_chain == ()
    assert run.finish.certificate_verify is None
    with pytest.raises(HandshakeFailure):
        deliver(run)
    assert run.server.state is ServerState.FAILED
    assert run.server.failure == "handshake_failure"


def test_optional_and_no_certificate_goes_on_anonymously() -> None:
    run = connect(client_config(None), server_config(ClientAuth.OPTIONAL))
    assert run.server.state is ServerState.ESTABLISHED
    assert run.server.session is not None and run.server.session.client_identity is None
    assert message_types(run.server.transcript)[6:8] == [
        HandshakeType.certificate,
        HandshakeType.client_key_exchange,
    ]


def test_optional_with_a_certificate_authenticates() -> None:
    run = connect(client_config(client_identity()), server_config(ClientAuth.OPTIONAL))
    assert run.server.session is not None
    assert run.server.session.client_identity == PeerIdentity.of(client_identity().certificate)


def test_certificate_from_a_foreign_ca_is_unknown_ca() -> None:
    run = start(client_config(foreign_client_identity()), server_config(ClientAuth.OPTIONAL))
    with pytest.raises(UnknownCA):
        deliver(run)
    assert run.server.failure == "unknown_ca"


def test_server_certificate_is_no_client_certificate() -> None:
    # A serverAuth-only certificate from the trusted CA: its key usage does not allow it.
    _, server = identity()
    run = start(client_config(server), server_config())
    with pytest.raises(kdf_lib.errors.UnsupportedCertificate):
        deliver(run)


def test_certificate_verify_that_does_not_verify_is_decrypt_error() -> None:
    run = start(client_config(client_identity()), server_config())
    verify = run.finish.certificate_verify
    assert verify is not None
    forged = bytes([verify.signature[0] ^ 1]) + verify.signature[1:]
    with pytest.raises(DecryptError):
        deliver(
            run,
            dataclasses.replace(
                run.finish, certificate_verify=dataclasses.replace(verify, signature=forged)
            ),
        )
    assert run.server.failure == "decrypt_error"


def test_certificate_verify_from_another_key_is_decrypt_error() -> None:
    # The foreign certificate's key signs, but the certificate sent is the trusted one.
    run = start(client_config(foreign_client_identity()), server_config(ClientAuth.OPTIONAL))
    trusted = tuple(pki.certificate_chain_pem([client_identity().certificate]))
    with pytest.raises(DecryptError):
        deliver(run, dataclasses.replace(run.finish, certificate_chain=trusted))


def test_missing_certificate_verify_is_unexpected_message() -> None:
    run = start(client_config(client_identity()), server_config())
    with pytest.raises(UnexpectedMessage):
        deliver(run, dataclasses.replace(run.finish, certificate_verify=None))


def test_missing_client_certificate_is_unexpected_message() -> None:
    run = start(client_config(client_identity()), server_config())
    with pytest.raises(UnexpectedMessage):
        deliver(
            run, dataclasses.replace(run.finish, certificate_chain=None, certificate_verify=None)
        )


def test_unrequested_client_certificate_is_unexpected_message() -> None:
    run = start(client_config(client_identity()), server_config(ClientAuth.NONE))
    chain = tuple(pki.certificate_chain_pem([client_identity().certificate]))
    with pytest.raises(UnexpectedMessage):
        deliver(run, dataclasses.replace(run.finish, certificate_chain=chain))


def test_certificate_request_after_hello_done_state_is_unexpected() -> None:
    client = ClientHandshake(client_config(client_identity()))
    server = ServerHandshake(server_config())
    flight = server.receive_client_hello(client.client_hello())
    # An ECDHE flight whose CertificateRequest comes without the ServerKeyExchange before it.
    with pytest.raises(UnexpectedMessage):
        client.receive_server_flight(dataclasses.replace(flight, server_key_exchange=None))


# -- resumption ------------------------------------------------------------------------------------


def test_resumption_by_session_id_keeps_the_client_identity() -> None:
    sessions: dict[bytes, Session] = {}
    first = connect(client_config(client_identity()), server_config(), sessions=sessions)
    assert first.server.session_to_cache is not None
    sessions[first.server.session_to_cache.session_id] = first.server.session_to_cache
    resumed = connect(
        client_config(client_identity()),
        server_config(),
        resume=first.client.session,
        sessions=sessions,
    )
    assert resumed.server.connection is not None and resumed.server.connection.resumed
    assert resumed.flight.certificate_request is None
    assert resumed.server.session is not None
    assert resumed.server.session.client_identity == PeerIdentity.of(client_identity().certificate)


def test_resumption_by_ticket_keeps_the_client_identity() -> None:
    keys = TicketKeys(TicketKey.generate())
    first = connect(client_config(client_identity(), tickets=True), server_config(), tickets=keys)
    assert first.client.session is not None and first.client.session.ticket is not None
    resumed = connect(
        client_config(client_identity(), tickets=True),
        server_config(),
        resume=first.client.session,
        tickets=keys,
    )
    assert resumed.server.connection is not None and resumed.server.connection.resumed
    assert resumed.server.session is not None
    assert resumed.server.session.client_identity == PeerIdentity.of(client_identity().certificate)


def test_required_server_does_not_resume_an_anonymous_session() -> None:
    sessions: dict[bytes, Session] = {}
    first = connect(client_config(None), server_config(ClientAuth.OPTIONAL), sessions=sessions)
    assert first.server.session_to_cache is not None
    sessions[first.server.session_to_cache.session_id] = first.server.session_to_cache
    again = connect(
        client_config(client_identity()),
        server_config(ClientAuth.REQUIRED),
        resume=first.client.session,
        sessions=sessions,
    )
    assert again.server.connection is not None and not again.server.connection.resumed
    assert again.flight.certificate_request is not None


def test_ticket_state_carries_the_client_identity() -> None:
    identity_ = PeerIdentity.of(client_identity().certificate)
    state = TicketState(ECDHE, b"m" * 48, True, SERVER_NAME, 1000, identity_)
    assert TicketState.decode(state.encode()) == state
    anonymous = dataclasses.replace(state, client_identity=None)
    assert TicketState.decode(anonymous.encode()).client_identity is None


def test_session_state_keeps_the_client_identity() -> None:
    run = connect(client_config(client_identity()), server_config())
    assert run.server.session is not None
    assert Session.from_state(run.server.session.to_state()) == run.server.session


def test_server_saved_after_hello_verifies_the_client_on_restore() -> None:
    run = start(client_config(client_identity()), server_config())
    assert run.server.state is ServerState.WAIT_CLIENT_CERTIFICATE
    restored = ServerHandshake.from_state(run.server.to_state(), server_config())
    run.server = restored
    deliver(run)
    assert restored.session is not None
    assert restored.session.client_identity == PeerIdentity.of(client_identity().certificate)


# -- the codec -------------------------------------------------------------------------------------


def test_certificate_request_json_round_trips_and_encodes_per_rfc() -> None:
    run = start(client_config(client_identity()), server_config())
    request = run.flight.certificate_request
    assert request is not None
    again = ServerFlight.from_json(run.flight.to_json())
    assert again.certificate_request == request
    assert request.certificate_types == (
        ClientCertificateType.rsa_sign,
        ClientCertificateType.ecdsa_sign,
    )
    dn = identity()[0].certificate.subject.public_bytes()
    assert request.certificate_authorities == (dn,)
    schemes = b"".join(s.to_bytes(2, "big") for s in request.signature_algorithms)
    body = (
        b"\x02\x01\x40"
        + len(schemes).to_bytes(2, "big")
        + schemes
        + (len(dn) + 2).to_bytes(2, "big")
        + len(dn).to_bytes(2, "big")
        + dn
    )
    assert request.encode() == b"\x0d" + len(body).to_bytes(3, "big") + body


def test_client_finish_json_round_trips() -> None:
    run = start(client_config(client_identity()), server_config())
    assert ClientFinish.from_json(run.finish.to_json()) == run.finish
    empty = start(client_config(None), server_config()).finish
    assert empty.to_json()["certificate_chain"] == []
    assert ClientFinish.from_json(empty.to_json()) == empty


def test_client_finish_refuses_certificate_verify_without_certificate() -> None:
    run = start(client_config(client_identity()), server_config())
    body = run.finish.to_json()
    body["certificate_chain"] = []
    with pytest.raises(DecodeError):
        ClientFinish.from_json(body)


def test_certificate_request_refuses_unknown_type_and_empty_name() -> None:
    good = CertificateRequest(
        (ClientCertificateType.rsa_sign,), (kdf_lib.kex.SignatureScheme.rsa_pkcs1_sha256,), ()
    ).to_json()
    with pytest.raises(kdf_lib.errors.IllegalParameter):
        CertificateRequest.from_json({**good, "certificate_types": ["dss_sign"]})
    with pytest.raises(DecodeError):
        CertificateRequest.from_json({**good, "certificate_authorities": [""]})
    with pytest.raises(DecodeError):
        CertificateRequest.from_json({**good, "signature_algorithms": []})
    with pytest.raises(DecodeError):
        CertificateVerify.from_json({"signature_algorithm": "rsa_pkcs1_sha256", "signature": ""})


# -- OpenSSL as the independent implementation ---------------------------------------------------


def _openssl_mtls(tmp_path: Path) -> tuple[list[tuple[str, bytes]], bytes]:
    """A TLS 1.2 handshake between Python's ``ssl`` client (with client_svc's certificate) and
    server (CERT_REQUIRED, trusting the run's CA): the handshake messages in wire order, each
    with its sender, and OpenSSL's master secret from its key log."""
    ca, server = identity()
    client = client_identity()
    for name, issued in (("server", server), ("client", client)):
        (tmp_path / f"{name}.pem").write_bytes(issued.certificate_pem())
        (tmp_path / f"{name}.key").write_bytes(issued.private_key_pem())
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for context in (server_context, client_context):
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("AES128-GCM-SHA256")  # RSA key exchange: the PMS can be decrypted
    server_context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.options |= ssl.OP_NO_TICKET  # no NewSessionTicket in the server's last flight
    server_context.load_verify_locations(cadata=ca.certificate_pem().decode())
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    client_context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
    client_context.keylog_filename = str(tmp_path / "keylog")
    bios = {side: (ssl.MemoryBIO(), ssl.MemoryBIO()) for side in ("client", "server")}
    objs = {
        "client": client_context.wrap_bio(*bios["client"], server_side=False),
        "server": server_context.wrap_bio(*bios["server"], server_side=True),
    }
    wire: list[tuple[str, bytes]] = []
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, peer in (("client", "server"), ("server", "client")):
            if not done[side]:
                try:
                    objs[side].do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
            data = bios[side][1].read()
            if data:
                wire.append((side, data))
                bios[peer][0].write(data)
        if all(done.values()):
            break
    assert all(done.values()), "OpenSSL's handshake did not complete"
    handshake: list[tuple[str, bytes]] = []
    for side in ("client", "server"):
        stream = b"".join(data for sender, data in wire if sender == side)
        buffer, offset = b"", 0
        while offset < len(stream):
            content_type = stream[offset]
            length = int.from_bytes(stream[offset + 3 : offset + 5], "big")
            fragment = stream[offset + 5 : offset + 5 + length]
            offset += 5 + length
            if content_type == 20:  # ChangeCipherSpec: what follows is protected
                break
            if content_type == 22:
                buffer += fragment
        handshake += [(side, m) for m in messages(buffer)]
    order = [1, 2, 11, 13, 14, 11, 16, 15]  # the unprotected messages, in RFC 5246 §7.3 order
    ordered = _wire_order(handshake)
    assert [m[0] for _, m in ordered] == order
    lines = (tmp_path / "keylog").read_text().split("\n")
    master = next(
        bytes.fromhex(line.split()[2]) for line in lines if line.startswith("CLIENT_RANDOM")
    )
    return ordered, master


def parse_certificate_request(message: bytes) -> tuple[list[int], list[int], list[bytes]]:
    """types<1..2^8-1>, supported_signature_algorithms<2..2^16-2>, certificate_authorities
    <0..2^16-1> of DistinguishedName<1..2^16-1>; every byte accounted for."""
    assert message[0] == HandshakeType.certificate_request
    assert int.from_bytes(message[1:4], "big") == len(message) - 4
    body = message[4:]
    types = list(body[1 : 1 + body[0]])
    rest = body[1 + body[0] :]
    schemes_length = int.from_bytes(rest[:2], "big")
    schemes = rest[2 : 2 + schemes_length]
    codes = [int.from_bytes(schemes[i : i + 2], "big") for i in range(0, len(schemes), 2)]
    names_length = int.from_bytes(rest[2 + schemes_length : 4 + schemes_length], "big")
    names_block = rest[4 + schemes_length :]
    assert len(names_block) == names_length
    names, offset = [], 0
    while offset < len(names_block):
        length = int.from_bytes(names_block[offset : offset + 2], "big")
        names.append(names_block[offset + 2 : offset + 2 + length])
        offset += 2 + length
    assert offset == names_length
    return types, codes, names


def _wire_order(handshake: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    client = [m for side, m in handshake if side == "client"]
    server = [m for side, m in handshake if side == "server"]
    # ClientHello; the server's flight; the client's second flight.
    return (
        [("client", client[0])]
        + [("server", m) for m in server]
        + [("client", m) for m in client[1:]]
    )


def test_openssl_client_certificate_verify_and_ems_match_kdf_lib(tmp_path: Path) -> None:
    ordered, master = _openssl_mtls(tmp_path)
    wire = [m for _, m in ordered]
    hello, request, client_certificate, cke, certificate_verify = (
        wire[0],
        wire[3],
        wire[5],
        wire[6],
        wire[7],
    )
    # The client's Certificate is kdf_lib's CertificateMessage of the same chain.
    der = client_identity().certificate.public_bytes(Encoding.DER)
    assert client_certificate == CertificateMessage((der,)).encode()
    # OpenSSL's CertificateRequest has the layout kdf_lib encodes (RFC 5246 §7.4.4), and
    # kdf_lib's own request reads back through the same parser.
    types, codes, names = parse_certificate_request(request)
    assert ClientCertificateType.rsa_sign in types and names == []
    ours = start(client_config(client_identity()), server_config()).flight.certificate_request
    assert ours is not None
    assert parse_certificate_request(ours.encode()) == (
        [int(t) for t in ours.certificate_types],
        [int(c) for c in ours.signature_algorithms],
        list(ours.certificate_authorities),
    )
    assert ClientCertificateType.rsa_sign in types
    # RFC 5246 §7.4.8: OpenSSL's CertificateVerify signs ClientHello .. ClientKeyExchange, the
    # same bytes kdf_lib's server verifies against.
    signed = b"".join(wire[:7])
    scheme = kdf_lib.kex.SignatureScheme(int.from_bytes(certificate_verify[4:6], "big"))
    signature = certificate_verify[8:]
    assert scheme in codes  # one the request offered
    public_key = client_identity().certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    verify_certificate_verify(public_key, scheme, signature, signed)
    # RFC 7627: OpenSSL's extended master secret hashes up to ClientKeyExchange, not up to
    # CertificateVerify: kdf_lib's derivation from the decrypted pre-master secret agrees.
    assert hello[0] == HandshakeType.client_hello and cke[0] == HandshakeType.client_key_exchange
    server_key = identity()[1].private_key
    assert isinstance(server_key, rsa.RSAPrivateKey)
    pms = server_key.decrypt(cke[6:], padding.PKCS1v15())
    assert kdf_lib.extended_master_secret(pms, hashlib.sha256(signed).digest(), "sha256") == master
    assert (
        kdf_lib.extended_master_secret(pms, hashlib.sha256(b"".join(wire)).digest(), "sha256")
        != master
    )


def test_kdf_lib_client_flight_matches_what_openssl_sends() -> None:
    # The same message sequence kdf_lib's client produces for an RSA suite (compare the order
    # OpenSSL used in the test above).
    run = connect(client_config(client_identity(), RSA), server_config())
    assert [m[0] for m in messages(run.client.transcript)][:8] == [1, 2, 11, 13, 14, 11, 16, 15]


@pytest.mark.parametrize(
    "scheme",
    [
        kdf_lib.kex.SignatureScheme.rsa_pkcs1_sha256,
        kdf_lib.kex.SignatureScheme.rsa_pkcs1_sha384,
        kdf_lib.kex.SignatureScheme.rsa_pss_rsae_sha256,
        kdf_lib.kex.SignatureScheme.rsa_pss_rsae_sha384,
    ],
    ids=lambda s: s.name,
)
# tlslite-ng's package imports its asyncore integration, deprecated in Python 3.11.
@pytest.mark.filterwarnings("ignore:The asyncore module is deprecated:DeprecationWarning")
def test_tlslite_ng_verifies_kdf_lib_certificate_verify(scheme: object) -> None:
    """tlslite-ng's own CertificateVerify code (RFC 5246 §7.4.8: the bytes it signs, its RSA)
    accepts the signature kdf_lib's client made over the transcript through ClientKeyExchange."""
    from tlslite.handshakehashes import HandshakeHashes  # type: ignore[import-untyped]
    from tlslite.keyexchange import KeyExchange  # type: ignore[import-untyped]
    from tlslite.x509 import X509  # type: ignore[import-untyped]

    ca, server = identity()
    config = ServerConfig(
        (server.certificate,),
        server.private_key,  # type: ignore[arg-type]
        signature_schemes=(scheme,),  # type: ignore[arg-type]
        client_auth=ClientAuth.REQUIRED,
        client_trust_anchors=(ca.certificate,),
    )
    run = connect(client_config(client_identity()), config)
    verify = run.finish.certificate_verify
    assert verify is not None and verify.signature_algorithm == scheme
    sent = messages(run.server.transcript)
    hashes_ = HandshakeHashes()
    hashes_.update(bytearray(b"".join(sent[:8])))  # ClientHello .. ClientKeyExchange
    code = int(verify.signature_algorithm)
    to_verify = KeyExchange.calcVerifyBytes(
        (3, 3), hashes_, (code >> 8, code & 0xFF), None, None, None
    )
    public_key = X509().parse(client_identity().certificate_pem().decode()).publicKey
    name = verify.signature_algorithm.name
    hash_name = "sha384" if name.endswith("384") else "sha256"
    if "pss" in name:
        ok = public_key.verify(
            bytearray(verify.signature),
            to_verify,
            padding="pss",
            hashAlg=hash_name,
            saltLen=48 if hash_name == "sha384" else 32,
        )
    else:
        ok = public_key.verify(bytearray(verify.signature), to_verify)
    assert ok


def test_client_saved_between_flights_keeps_its_identity() -> None:
    # client_svc's Redis store saves the client machine between the server's flights.
    run = start(client_config(client_identity()), server_config())
    config = client_config(client_identity())
    run.client = ClientHandshake.from_state(run.client.to_state(), config)
    deliver(run)
    assert run.client.session is not None
    assert run.client.session.client_identity == PeerIdentity.of(client_identity().certificate)


def test_a_server_names_no_more_client_cas_than_a_client_reads() -> None:
    ca, server = identity()
    with pytest.raises(ValueError, match="client CAs"):
        ServerConfig(
            (server.certificate,),
            server.private_key,  # type: ignore[arg-type]
            client_auth=ClientAuth.OPTIONAL,
            client_trust_anchors=(ca.certificate,) * 17,
        )
    with pytest.raises(ValueError, match="client_trust_anchors"):
        ServerConfig((server.certificate,), server.private_key, client_auth=ClientAuth.REQUIRED)  # type: ignore[arg-type]


@pytest.mark.parametrize("curve", ["secp256r1", "secp384r1"])
def test_an_ecdsa_client_certificate_signs_with_an_ecdsa_scheme(curve: str) -> None:
    ca, _ = identity()
    ecdsa = issue_ecdsa_client_certificate(ca, "client_svc", now=NOW, curve=curve)
    config = ClientConfig(
        (ca.certificate,),
        SERVER_NAME,
        (ECDHE,),
        client_certificate_chain=(ecdsa.certificate,),
        client_private_key=ecdsa.private_key,
    )
    run = connect(config, server_config())
    verify = run.finish.certificate_verify
    assert verify is not None
    assert verify.signature_algorithm.name.startswith("ecdsa_")
    assert run.server.session is not None
    assert run.server.session.client_identity == PeerIdentity.of(ecdsa.certificate)
    # A forged ECDSA signature is decrypt_error, as an RSA one is.
    again = start(config, server_config())
    sent = again.finish.certificate_verify
    assert sent is not None
    forged = dataclasses.replace(
        sent, signature=sent.signature[:-1] + bytes([sent.signature[-1] ^ 1])
    )
    with pytest.raises(DecryptError):
        deliver(again, dataclasses.replace(again.finish, certificate_verify=forged))


def test_an_ecdsa_client_without_an_ecdsa_scheme_offered_sends_no_certificate() -> None:
    ca, server = identity()
    ecdsa = issue_ecdsa_client_certificate(ca, "client_svc", now=NOW)
    config = ClientConfig(
        (ca.certificate,),
        SERVER_NAME,
        (ECDHE,),
        client_certificate_chain=(ecdsa.certificate,),
        client_private_key=ecdsa.private_key,
    )
    rsa_only = ServerConfig(
        (server.certificate,),
        server.private_key,
        signature_schemes=(kdf_lib.kex.SignatureScheme.rsa_pkcs1_sha256,),
        client_auth=ClientAuth.OPTIONAL,
        client_trust_anchors=(ca.certificate,),
    )
    run = connect(config, rsa_only)
    assert run.finish.certificate_chain == ()
    assert run.server.session is not None and run.server.session.client_identity is None
