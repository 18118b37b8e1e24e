"""Fixtures: the attacker's Peer against server_svc (the root conftest's ``server``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from helpers.peer import Peer


@pytest.fixture
def peer(server: FlaskClient) -> Callable[..., Peer]:
    """``peer(*suites, ems=, etm=, resume=)``: a new client connection to the app."""

    def make(*suites: str, **options: Any) -> Peer:
        return Peer(server, *suites, **options)

    return make
