"""POST /demo/mtls: service-to-service mutual TLS, as service meshes run it.

A simulation with kdf_lib's real machines in this process, not calls to server_svc (whose
CLIENT_AUTH the operator sets): a server that requires client certificates from its own CA
(RFC 5246 §7.4.4) meets three clients. One presents a certificate that CA issued and signs the
handshake with its key (§7.4.6, §7.4.8): accepted, and the server knows which service it talks
to. One has no certificate: refused with handshake_failure. One presents a certificate from a
CA the server does not trust: refused with unknown_ca.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint, jsonify

from kdf_lib import pki
from kdf_lib.client_auth import ClientAuth, issue_client_certificate
from kdf_lib.errors import TLSError
from kdf_lib.handshake import ClientConfig, ClientHandshake, ServerConfig, ServerHandshake
from kdf_lib.messages import Fields
from kdf_lib.role import Role
from kdf_lib.suites import SUITES
from kdf_lib.trace import Trace
from kdf_lib.wire import HandshakeType
from lab_common.contract import DEMO_MTLS
from lab_common.http import json_body

from .demos import Report

bp = Blueprint("mtls_demo", __name__)

SUITE = SUITES["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
SERVER_NAME = "server"

MTLS = (
    "In TLS the server proves who it is; the client stays anonymous unless the server asks. "
    "Between services that is not enough: a payments service must know that the caller is the "
    "orders service and not any program that can reach it. With mutual TLS the server sends a "
    "CertificateRequest naming the CAs it trusts; the client answers with its certificate and "
    "a CertificateVerify, a signature over every handshake message so far made with that "
    "certificate's key, which proves it holds the key and binds the proof to this handshake. "
    "Service meshes (Istio, Linkerd, Consul) issue every service such a certificate and run "
    "mutual TLS between all of them."
)


@dataclass(frozen=True)
class _Pki:
    ca: pki.Issued
    server: pki.Issued
    client: pki.Issued
    foreign_client: pki.Issued


@cache
def _pki() -> _Pki:
    now = datetime.now(UTC)
    ca = pki.create_ca("Mesh CA", now=now)
    foreign = pki.create_ca("Foreign CA", now=now)
    return _Pki(
        ca,
        pki.issue_server_certificate(ca, SERVER_NAME, now=now),
        issue_client_certificate(ca, "orders", now=now),
        issue_client_certificate(foreign, "orders", now=now),
    )


def prepare() -> None:
    """Make the demo's certificates now (client_svc's gunicorn does it as a worker starts): five
    RSA keys take longer than a request may."""
    _pki()


def _server() -> ServerHandshake:
    made = _pki()
    assert isinstance(made.server.private_key, rsa.RSAPrivateKey)
    config = ServerConfig(
        (made.server.certificate,),
        made.server.private_key,
        cipher_suites=(SUITE,),
        client_auth=ClientAuth.REQUIRED,
        client_trust_anchors=(made.ca.certificate,),
    )
    return ServerHandshake(config, trace=Trace(Role.SERVER))


def _client(identity: pki.Issued | None) -> ClientHandshake:
    made = _pki()
    key = identity.private_key if identity is not None else None
    assert key is None or isinstance(key, rsa.RSAPrivateKey)
    config = ClientConfig(
        (made.ca.certificate,),
        SERVER_NAME,
        (SUITE,),
        client_certificate_chain=(identity.certificate,) if identity is not None else (),
        client_private_key=key,
    )
    return ClientHandshake(config, trace=Trace(Role.CLIENT))


def _attempt(identity: pki.Issued | None) -> dict[str, Any]:
    """One handshake against the mesh server; what each side saw."""
    client, server = _client(identity), _server()
    flight = server.receive_client_hello(client.client_hello())
    finish = client.receive_server_flight(flight)
    alert = None
    try:
        reply = server.receive_client_finish(
            finish.client_key_exchange,
            finish.finished_record,
            certificate_chain=finish.certificate_chain,
            certificate_verify=finish.certificate_verify,
        )
        client.receive_server_finished(reply, server.new_session_ticket)
    except TLSError as refusal:
        alert = refusal.code
        client.receive_alert(refusal.code)
    identity_seen = server.session.client_identity if server.session is not None else None
    return {
        "established": server.connection is not None and client.connection is not None,
        "alert": alert,
        "client_certificate": (
            {
                "subject": identity.certificate.subject.rfc4514_string(),
                "issuer": identity.certificate.issuer.rfc4514_string(),
            }
            if identity is not None
            else None
        ),
        "client_identity": identity_seen.to_json() if identity_seen is not None else None,
        "messages": _messages(server.transcript),
        "trace": client.summary()["trace"] + server.summary()["trace"],
    }


def _messages(transcript: bytes) -> list[str]:
    """The handshake messages in protocol order, by RFC 5246 name."""
    names, offset = [], 0
    while offset + 4 <= len(transcript):
        names.append(HandshakeType(transcript[offset]).name)
        offset += 4 + int.from_bytes(transcript[offset + 1 : offset + 4], "big")
    return names


def run_mtls() -> dict[str, Any]:
    report = Report("mtls", "Mutual TLS between services", MTLS)
    accepted = _attempt(_pki().client)
    report.step(
        "server",
        "send CertificateRequest",
        "after its ServerKeyExchange: rsa_sign certificates, the schemes it verifies, and the "
        "name of the one CA it trusts for clients (Mesh CA)",
    )
    report.step(
        "client",
        "send Certificate, ClientKeyExchange, CertificateVerify",
        "the orders service's certificate, then its signature over ClientHello..ClientKeyExchange"
        " (the same messages the extended master secret hashes)",
    )
    report.step(
        "server",
        "verify client Certificate and CertificateVerify",
        f"accepted: the session belongs to {accepted['client_identity']['subject']}"
        if accepted["client_identity"]
        else "refused",
    )
    anonymous = _attempt(None)
    report.step(
        "client",
        "send an empty Certificate",
        f"a client with no certificate: the server ends the handshake ({anonymous['alert']})",
    )
    foreign = _attempt(_pki().foreign_client)
    report.step(
        "client",
        "send a certificate from Foreign CA",
        f"a valid certificate, but not from a CA the server trusts: {foreign['alert']}",
    )
    return report.answer(
        {
            "accepted": accepted["established"],
            "client_identity": accepted["client_identity"],
            "without_certificate": anonymous["alert"],
            "foreign_ca": foreign["alert"],
        },
        handshakes={
            "accepted": accepted,
            "without_certificate": anonymous,
            "foreign_ca": foreign,
        },
    )


@bp.post(DEMO_MTLS)
def mtls() -> Any:
    with Fields(json_body(optional=True), "mtls request"):
        pass  # no options: the three handshakes are the demo
    return jsonify(run_mtls())
