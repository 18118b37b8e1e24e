"""Fixtures: server_svc as a Flask app, the attacker's Peer, and the log lines it wrote."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server_svc import create_app

from .peer import Peer, server_config


@pytest.fixture
def server_app():
    return create_app({"SERVER_CONFIG": server_config(), "TESTING": True})


@pytest.fixture
def http(server_app):
    return server_app.test_client()


@pytest.fixture
def peer(http) -> Callable[..., Peer]:
    """``peer(*suites, ems=, etm=, resume=)``: a new client connection to the app."""

    def make(*suites: str, **options: Any) -> Peer:
        return Peer(http, *suites, **options)

    return make
