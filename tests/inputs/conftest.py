"""Fixtures: server_svc and client_svc as Flask apps, client_svc wired to server_svc in-process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from attacks.peer import identity, server_config

from client_svc import create_app as create_client_app
from server_svc import create_app as create_server_app


class FlaskTransport:
    """client_svc's Transport, backed by server_svc's Flask test client instead of HTTP."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        response = self.client.open(
            path,
            method=method,
            data=None if body is None else json.dumps(body),
            content_type="application/json" if body is not None else None,
        )
        return response.status_code, response.get_data()


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
