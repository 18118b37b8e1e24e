"""Fixtures: client_svc, server_svc and a mitm server_svc, wired together without a network."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from inprocess import FlaskTransport

from client_svc import create_app as create_client_app
from kdf_lib import pki
from kdf_lib.handshake import ServerConfig
from server_svc import create_app as create_server_app

from .lab import Lab

#: server_svc.certs names the compose stack's CA so, and the mitm's CA too.
CA_NAME = "TLS Lab Demo CA"
MITM_URL = "http://mitm:8002"


@pytest.fixture(scope="session")
def ca() -> pki.Issued:
    return pki.create_ca(CA_NAME, now=datetime.now(UTC))


@pytest.fixture(scope="session")
def server_identity(ca: pki.Issued) -> pki.Issued:
    return pki.issue_server_certificate(ca, "server", now=datetime.now(UTC))


@pytest.fixture(scope="session")
def mitm_identity() -> pki.Issued:
    """A certificate for the same name from another CA, one with the very same name."""
    now = datetime.now(UTC)
    return pki.issue_server_certificate(pki.create_ca(CA_NAME, now=now), "server", now=now)


def _server(identity: pki.Issued, reveal: bool) -> Any:
    config = ServerConfig((identity.certificate,), identity.private_key)
    return create_server_app({"SERVER_CONFIG": config, "TESTING": True, "REVEAL_SECRETS": reveal})


@pytest.fixture
def make_lab(
    ca: pki.Issued, server_identity: pki.Issued, mitm_identity: pki.Issued
) -> Callable[..., Lab]:
    def make(
        *, server_reveal: bool = True, client_reveal: bool = False, **client_config: Any
    ) -> Lab:
        server = _server(server_identity, server_reveal).test_client()
        to_server = FlaskTransport(server)
        to_mitm = FlaskTransport(_server(mitm_identity, False).test_client())
        config = {
            "TRUST_ANCHORS": (ca.certificate,),
            "TRANSPORT": to_server,
            "SERVER_NAME": "server",
            "TESTING": True,
            "REVEAL_SECRETS": client_reveal,
            "MITM_SERVER_URL": MITM_URL,
            "MITM_TRANSPORT": to_mitm,
            **client_config,
        }
        client = create_client_app(config).test_client()
        return Lab(client, server, to_server, to_mitm)

    return make


@pytest.fixture
def lab(make_lab: Callable[..., Lab]) -> Lab:
    """The lab with server_svc's REVEAL_SECRETS on (the forward-secrecy demo needs it)."""
    return make_lab()
