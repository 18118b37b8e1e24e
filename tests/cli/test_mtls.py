"""`tls-lab handshake` against services that run mutual TLS: the ladder shows the
CertificateRequest, the client's Certificate and its CertificateVerify."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask
from helpers.pki import NOW
from helpers.transport import FlaskTransport

from kdf_lib import pki
from kdf_lib.client_auth import issue_client_certificate

from .conftest import Lab
from .test_handshake_view import arrows


def test_the_ladder_shows_the_client_certificate_messages(
    make_server: Callable[..., Flask],
    make_client_app: Callable[..., Flask],
    ca: pki.Issued,
    tmp_path: Path,
) -> None:
    client_identity = issue_client_certificate(ca, "client_svc", now=NOW)
    (tmp_path / "ca.pem").write_bytes(ca.certificate_pem())
    (tmp_path / "client.pem").write_bytes(client_identity.certificate_pem())
    (tmp_path / "client.key").write_bytes(client_identity.private_key_pem())
    server = make_server(CLIENT_AUTH="required", CLIENT_CA_FILE=str(tmp_path / "ca.pem"))
    client = make_client_app(
        TRANSPORT=FlaskTransport(server.test_client()),
        CLIENT_CERT_FILE=str(tmp_path / "client.pem"),
        CLIENT_KEY_FILE=str(tmp_path / "client.key"),
    )
    lab = Lab(client.test_client(), server.test_client(), tmp_path / "keylog")
    status, out, err = lab.run("handshake", "--key-exchange", "ecdhe", "--message", "hi")
    assert status == 0, err
    found = arrows(out)
    assert found[1] == (
        "← ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone"
    )
    assert found[2] == "Certificate, ClientKeyExchange, CertificateVerify, Finished →"
    for action in (
        "send CertificateRequest",
        "send client Certificate",
        "verify CertificateVerify",
    ):
        assert action in out
    assert "CN=client_svc" in out
