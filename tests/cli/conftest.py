"""Fixtures: client_svc and server_svc in-process, wired together, and an HTTP function
that routes the CLI's calls to their Flask test clients (no sockets)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from helpers.transport import FlaskTransport

from lab_cli.__main__ import main
from lab_common.contract import SESSION

CLIENT_URL = "http://client.test:8001"
SERVER_URL = "http://server.test:8002"


class Lab:
    """Both services in-process; ``http`` is the CLI's transport, routed by URL."""

    def __init__(self, client: Any, server: Any, keylog: Path) -> None:
        self.client = client
        self.server = server
        self.keylog = keylog
        self.calls: list[tuple[str, str]] = []
        #: Rewrites server_svc's GET /sessions answer before the CLI sees it (doctoring).
        self.doctor_server_view: Callable[[dict[str, Any]], None] | None = None

    def http(self, method: str, url: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        self.calls.append((method, url))
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        target = {CLIENT_URL: self.client, SERVER_URL: self.server}.get(base)
        if target is None:
            raise ConnectionRefusedError(111, "Connection refused")
        response = target.open(
            parts.path,
            method=method,
            data=None if body is None else json.dumps(body),
            content_type="application/json" if body is not None else None,
        )
        data = response.get_data()
        if (
            target is self.server
            and self.doctor_server_view
            and parts.path.startswith(SESSION.removesuffix("{connection_id}"))
        ):
            view = json.loads(data)
            self.doctor_server_view(view)
            data = json.dumps(view).encode()
        return response.status_code, data

    def run(self, *argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
        """``tls-lab argv...`` against this lab; returns (status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        args = list(argv)
        if args and args[0] == "handshake":
            args += ["--client", CLIENT_URL, "--server", SERVER_URL]
        status = main(args, http=self.http, stdout=out, stderr=err, environ=environ or {})
        return status, out.getvalue(), err.getvalue()


@pytest.fixture
def make_lab(
    make_server: Callable[..., Flask], make_client_app: Callable[..., Flask], tmp_path: Path
) -> Callable[[bool], Lab]:
    """``make_lab(reveal)``: both services, with REVEAL_SECRETS as ``reveal`` says."""

    def make(reveal: bool) -> Lab:
        server = make_server(REVEAL_SECRETS=reveal).test_client()
        keylog = tmp_path / "sslkeylog.txt"
        client = make_client_app(
            TRANSPORT=FlaskTransport(server), SSLKEYLOGFILE=str(keylog), REVEAL_SECRETS=reveal
        ).test_client()
        return Lab(client, server, keylog)

    return make


@pytest.fixture
def lab(make_lab: Callable[[bool], Lab]) -> Lab:
    return make_lab(False)


@pytest.fixture
def revealing_lab(make_lab: Callable[[bool], Lab]) -> Lab:
    return make_lab(True)
