"""Fixtures for the live page: client_svc wired in-process to server_svc (Flask test clients),
and, for the browser tests, real gunicorn processes driven by headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from inprocess import FlaskTransport
from served import LiveLab, start_lab, stop_lab

from client_svc import create_app as create_client_app
from kdf_lib import pki
from kdf_lib.handshake import ServerConfig
from server_svc import create_app as create_server_app


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.create_ca("Web Test CA", now=datetime.now(UTC))


def _client_app(ca: pki.Issued, *, reveal_secrets: bool) -> Any:
    identity = pki.issue_server_certificate(ca, "server", now=datetime.now(UTC))
    server_app = create_server_app(
        {
            "SERVER_CONFIG": ServerConfig((identity.certificate,), identity.private_key),
            "TESTING": True,
            "REVEAL_SECRETS": reveal_secrets,
        }
    )
    return create_client_app(
        {
            "TRUST_ANCHORS": (ca.certificate,),
            "TRANSPORT": FlaskTransport(server_app.test_client()),
            "SERVER_NAME": "server",
            "TESTING": True,
            "REVEAL_SECRETS": reveal_secrets,
        }
    )


@pytest.fixture
def client(ca: pki.Issued) -> Iterator[Any]:
    yield _client_app(ca, reveal_secrets=False).test_client()


@pytest.fixture
def revealing_client(ca: pki.Issued) -> Iterator[Any]:
    """client_svc and server_svc as the operator starts them with REVEAL_SECRETS=1."""
    yield _client_app(ca, reveal_secrets=True).test_client()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLab]:
    """Both services under a real gunicorn, for the browser tests (one pair per module)."""
    running = start_lab(tmp_path_factory.mktemp("lab"))
    yield running
    stop_lab(running)


@pytest.fixture(scope="module")
def revealing_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLab]:
    """The same with REVEAL_SECRETS=1."""
    running = start_lab(tmp_path_factory.mktemp("lab-reveal"), reveal_secrets=True)
    yield running
    stop_lab(running)
