"""Fixtures: server_svc and client_svc as Flask apps, client_svc wired to server_svc in-process;
the in-memory pair's identity as files, for the services under gunicorn."""

from __future__ import annotations

import pytest
from attacks.peer import identity, server_config
from inprocess import FlaskTransport
from served import Certificates, write_certificates

from client_svc import create_app as create_client_app
from server_svc import create_app as create_server_app


@pytest.fixture
def server_app():
    return create_server_app({"SERVER_CONFIG": server_config(), "TESTING": True})


@pytest.fixture
def server(server_app):
    return server_app.test_client()


@pytest.fixture
def client_app(server):
    ca, _ = identity()
    return create_client_app(
        {
            "TRUST_ANCHORS": (ca.certificate,),
            "TRANSPORT": FlaskTransport(server),
            "SERVER_NAME": "server",
            "TESTING": True,
        }
    )


@pytest.fixture
def client(client_app):
    return client_app.test_client()


@pytest.fixture(scope="session")
def pair_certificates(tmp_path_factory) -> Certificates:
    """The in-memory pair's identity (tests/kdf/pair.py), so that :class:`attacks.peer.Peer`
    can run real handshakes against server_svc under gunicorn."""
    return write_certificates(tmp_path_factory.mktemp("pair-identity"), *identity())
