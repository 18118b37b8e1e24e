"""Fixtures: client_svc, server_svc and a mitm server_svc, wired together without a network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from helpers.pki import CA_NAME, NOW, SERVER_NAME
from helpers.transport import FlaskTransport

from kdf_lib import pki

from .lab import Lab

MITM_URL = "http://mitm:8002"


@pytest.fixture(scope="session")
def mitm_identity() -> pki.Issued:
    """A certificate for the same name from another CA, one with the very same name."""
    return pki.issue_server_certificate(pki.create_ca(CA_NAME, now=NOW), SERVER_NAME, now=NOW)


@pytest.fixture
def make_lab(
    make_server: Callable[..., Flask],
    make_client_app: Callable[..., Flask],
    mitm_identity: pki.Issued,
) -> Callable[..., Lab]:
    """``make_lab(server_reveal=True, client_reveal=False, **client_settings)``."""

    def make(
        *, server_reveal: bool = True, client_reveal: bool = False, **client_settings: Any
    ) -> Lab:
        server = make_server(REVEAL_SECRETS=server_reveal).test_client()
        to_server = FlaskTransport(server)
        to_mitm = FlaskTransport(make_server(mitm_identity, REVEAL_SECRETS=False))
        settings = {
            "TRANSPORT": to_server,
            "REVEAL_SECRETS": client_reveal,
            "MITM_SERVER_URL": MITM_URL,
            "MITM_TRANSPORT": to_mitm,
            **client_settings,
        }
        client_app = make_client_app(**settings)
        return Lab(client_app.test_client(), server, to_server, to_mitm)

    return make


@pytest.fixture
def lab(make_lab: Callable[..., Lab]) -> Lab:
    """The lab with server_svc's REVEAL_SECRETS on (the forward-secrecy demo needs it)."""
    return make_lab()
