"""Fixtures for the live page: ``revealing_client`` (the root conftest's ``client`` with
REVEAL_SECRETS on both sides) and, for the browser tests, real gunicorn processes driven by
headless Chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.served import LiveLab, start_lab, stop_lab
from helpers.transport import FlaskTransport


@pytest.fixture
def revealing_client(
    make_server: Callable[..., Flask], make_client_app: Callable[..., Flask]
) -> FlaskClient:
    """client_svc and server_svc as the operator starts them with REVEAL_SECRETS=1."""
    server_app = make_server(REVEAL_SECRETS=True)
    return make_client_app(TRANSPORT=FlaskTransport(server_app), REVEAL_SECRETS=True).test_client()


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
