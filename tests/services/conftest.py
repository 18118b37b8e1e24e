"""Fixtures: server_svc and client_svc as Flask apps, wired together without a network."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from inprocess import FlaskTransport

from client_svc import create_app as create_client_app
from kdf_lib import pki
from kdf_lib.handshake import ServerConfig
from server_svc import create_app as create_server_app


@pytest.fixture(scope="session")
def ca() -> pki.Issued:
    return pki.create_ca("Test Lab CA", now=datetime.now(UTC))


@pytest.fixture(scope="session")
def server_identity(ca: pki.Issued) -> pki.Issued:
    return pki.issue_server_certificate(ca, "server", now=datetime.now(UTC))


@pytest.fixture
def server_app(server_identity: pki.Issued):
    config = ServerConfig((server_identity.certificate,), server_identity.private_key)
    app = create_server_app({"SERVER_CONFIG": config, "TESTING": True})
    return app


@pytest.fixture
def server(server_app):
    return server_app.test_client()


@pytest.fixture
def transport(server) -> FlaskTransport:
    return FlaskTransport(server)


@pytest.fixture
def client_app(ca: pki.Issued, transport: FlaskTransport, tmp_path):
    return create_client_app(
        {
            "TRUST_ANCHORS": (ca.certificate,),
            "TRANSPORT": transport,
            "SERVER_NAME": "server",
            "TESTING": True,
            "SSLKEYLOGFILE": str(tmp_path / "keys.log"),
        }
    )


@pytest.fixture
def client(client_app):
    return client_app.test_client()
