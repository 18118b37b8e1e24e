"""Fixtures: server_svc and client_svc as Flask apps, client_svc wired to server_svc in-process."""

from __future__ import annotations

import pytest
from attacks.peer import identity, server_config
from inprocess import FlaskTransport

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
