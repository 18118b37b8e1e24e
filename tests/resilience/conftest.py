"""Fixtures: client_svc driven through its HTTP API, server_svc in-process behind a breakable Wire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from client_svc import create_app as create_client_app
from kdf_lib import pki
from kdf_lib.handshake import ServerConfig
from server_svc import create_app as create_server_app

from .wire import Wire

NOW = datetime.now(UTC)


@pytest.fixture(scope="session")
def ca() -> pki.Issued:
    return pki.create_ca("Resilience Test CA", now=NOW)


@pytest.fixture(scope="session")
def identity(ca: pki.Issued) -> pki.Issued:
    """The genuine server certificate: for "server", issued by the CA the client trusts."""
    return pki.issue_server_certificate(ca, "server", now=NOW)


@pytest.fixture
def make_server(identity: pki.Issued) -> Callable[..., Flask]:
    """A fresh server_svc app (a fresh process: empty stores), with ``identity`` by default."""

    def make(certificate: Any = None, private_key: Any = None, **config: Any) -> Flask:
        chain = (certificate or identity.certificate,)
        key = private_key or identity.private_key
        return create_server_app(
            {"SERVER_CONFIG": ServerConfig(chain, key), "TESTING": True, **config}
        )

    return make


@pytest.fixture
def server_app(make_server: Callable[..., Flask]) -> Flask:
    return make_server()


@pytest.fixture
def wire(server_app: Flask) -> Wire:
    return Wire(server_app)


@pytest.fixture
def make_client(ca: pki.Issued, wire: Wire) -> Callable[..., FlaskClient]:
    """client_svc wired to server_svc through ``wire``; ``config`` overrides its settings."""

    def make(**config: Any) -> FlaskClient:
        settings = {
            "TRUST_ANCHORS": (ca.certificate,),
            "TRANSPORT": wire,
            "SERVER_NAME": "server",
            "TESTING": True,
            **config,
        }
        return create_client_app(settings).test_client()

    return make


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()
