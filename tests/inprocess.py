"""client_svc wired to server_svc in-process: a Transport backed by a Flask test client."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient


class FlaskTransport:
    """client_svc's Transport to server_svc through server_svc's Flask test client instead of
    HTTP; ``calls`` remembers each (method, path) it carried."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        self.calls.append((method, path))
        response = self.client.open(
            path,
            method=method,
            data=None if body is None else json.dumps(body),
            content_type="application/json" if body is not None else None,
        )
        return response.status_code, response.get_data()
