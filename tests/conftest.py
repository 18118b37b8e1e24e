"""The fixtures every test folder shares: the run's CA and server identity, server_svc as a
Flask app, and client_svc wired to it in-process through a FlaskTransport.

pytest puts this folder on sys.path for this file, so test modules anywhere below import the
harness as ``helpers.<module>`` (see tests/helpers/__init__.py). A folder's own conftest keeps
only what is specific to it, built from these fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.pki import SERVER_NAME, ecdsa_identity, identity, server_config
from helpers.transport import FlaskTransport

from kdf_lib import pki


@pytest.fixture(scope="session")
def ca() -> pki.Issued:
    """The CA that client_svc trusts."""
    return identity()[0]


@pytest.fixture(scope="session")
def server_identity() -> pki.Issued:
    """server_svc's RSA certificate (for "server", issued by ``ca``) and its key."""
    return identity()[1]


@pytest.fixture(scope="session")
def ecdsa_server_identity() -> pki.IssuedEcdsa:
    """server_svc's ECDSA (P-256) certificate (for "server", issued by ``ca``) and its key: the
    servers of ``make_server`` hold both and pick by suite."""
    return ecdsa_identity()


@pytest.fixture
def make_server() -> Callable[..., Flask]:
    """``make_server(identity=None, ecdsa=None, rsa_only=False, **settings)``: a fresh
    server_svc app (a fresh process: empty stores) presenting ``identity`` (by default
    ``server_identity``) and ``ecdsa`` (by default ``ecdsa_server_identity``; none with
    ``rsa_only``)."""

    def make(
        identity: pki.Issued | None = None,
        ecdsa: pki.IssuedEcdsa | None = None,
        rsa_only: bool = False,
        **settings: Any,
    ) -> Flask:
        from server_svc import create_app as create_server_app  # tests/kdf runs without it

        config = server_config(identity, ecdsa, rsa_only=rsa_only)
        return create_server_app({"SERVER_CONFIG": config, "TESTING": True, **settings})

    return make


@pytest.fixture
def server_app(make_server: Callable[..., Flask]) -> Flask:
    return make_server()


@pytest.fixture
def server(server_app: Flask) -> FlaskClient:
    """server_svc's test client."""
    return server_app.test_client()


@pytest.fixture
def transport(server_app: Flask) -> FlaskTransport:
    """client_svc's way to ``server_app``, which a test can break (helpers.transport)."""
    return FlaskTransport(server_app)


@pytest.fixture
def make_client_app(ca: pki.Issued, transport: FlaskTransport) -> Callable[..., Flask]:
    """``make_client_app(**settings)``: a fresh client_svc app trusting ``ca``, wired to
    ``server_app`` through ``transport``; ``settings`` override (TRANSPORT too)."""

    def make(**settings: Any) -> Flask:
        from client_svc import create_app as create_client_app  # tests/kdf runs without it

        return create_client_app(
            {
                "TRUST_ANCHORS": (ca.certificate,),
                "TRANSPORT": transport,
                "SERVER_NAME": SERVER_NAME,
                "TESTING": True,
                **settings,
            }
        )

    return make


@pytest.fixture
def client_app(make_client_app: Callable[..., Flask]) -> Flask:
    return make_client_app()


@pytest.fixture
def client(client_app: Flask) -> FlaskClient:
    """client_svc's test client."""
    return client_app.test_client()
