"""Fixtures: client_svc driven through its HTTP API, talking to server_svc in-process through the
root conftest's ``transport``, the network a test breaks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient


@pytest.fixture
def make_client(make_client_app: Callable[..., Flask]) -> Callable[..., FlaskClient]:
    """``make_client(**settings)``: the test client of a fresh client_svc wired to server_svc."""

    def make(**settings: Any) -> FlaskClient:
        return make_client_app(**settings).test_client()

    return make
