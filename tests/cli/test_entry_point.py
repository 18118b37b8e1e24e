"""The installed entry point and the stdlib HTTP layer, in real processes and sockets on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lab_cli.http import ApiError, Service, urllib_http
from lab_common.contract import HANDSHAKE


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_module_help_lists_both_commands() -> None:
    result = run_module("--help")
    assert result.returncode == 0
    assert "handshake" in result.stdout and "decrypt" in result.stdout
    result = run_module("handshake", "--help")
    assert result.returncode == 0
    for flag in (
        "--key-exchange",
        "--suite",
        "--resume",
        "--no-ems",
        "--no-etm",
        "--message",
        "--json",
    ):
        assert flag in result.stdout


def test_unreachable_client_svc_is_one_line_of_explanation_and_status_1() -> None:
    # Port 1 on the loopback: nothing listens there, the connection is refused at once.
    result = run_module("handshake", "--client", "http://127.0.0.1:1")
    assert result.returncode == 1
    assert f"client_svc failed (POST http://127.0.0.1:1{HANDSHAKE})" in result.stderr
    assert "unreachable" in result.stderr
    assert "Traceback" not in result.stderr


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        if body.get("fail"):
            payload = {"error": {"code": "handshake_failure", "message": "no suite in common"}}
            self._answer(400, payload)
        else:
            self._answer(200, {"echo": body, "content_type": self.headers["Content-Type"]})

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_urllib_transport_sends_json_and_ignores_proxy_settings(
    local_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    service = Service("client_svc", local_server, urllib_http)
    answer = service.call("POST", HANDSHAKE, {"key_exchange": "rsa"})
    assert answer == {"echo": {"key_exchange": "rsa"}, "content_type": "application/json"}


def test_urllib_transport_turns_a_json_error_into_its_code(local_server: str) -> None:
    service = Service("client_svc", local_server, urllib_http)
    with pytest.raises(ApiError) as caught:
        service.call("POST", HANDSHAKE, {"fail": True})
    assert (caught.value.code, caught.value.status) == ("handshake_failure", 400)
    assert caught.value.message == "no suite in common"


def test_only_http_urls_are_fetched() -> None:
    service = Service("client_svc", "file:///etc", urllib_http)
    with pytest.raises(ApiError, match="unreachable"):
        service.call("GET", "/passwd")
