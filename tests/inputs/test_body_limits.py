"""Bodies over the size limit, and requests that are not valid HTTP, against the real server.

A declared Content-Length over MAX_CONTENT_LENGTH is refused from the headers alone, so a
client cannot make the service buffer (or wait for) a body it will refuse anyway. A chunked
body has no length up front; it is read up to the limit and refused when it goes past it.
Requests that are not valid HTTP never reach Flask: gunicorn answers them, and the services'
worker class (lab_common.gunicorn_worker) makes those answers JSON errors too.
The real server is gunicorn, so these run it, on a free port of 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kdf_lib import pki

from .test_bad_bodies import assert_error

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMIT = 4096
START_WITHIN_S = 30.0


@pytest.mark.parametrize("side", ["server", "client"])
def test_a_body_over_the_limit_is_refused_in_json(server_app, client_app, side):
    app = server_app if side == "server" else client_app
    app.config["MAX_CONTENT_LENGTH"] = LIMIT
    path = "/message"
    response = app.test_client().post(
        path, data=b'{"x": "' + b"a" * LIMIT + b'"}', content_type="application/json"
    )
    assert_error(response, 413, "body_too_large")


HELLO = json.dumps(
    {"client_random": "00" * 32, "cipher_suites": ["TLS_RSA_WITH_AES_128_CBC_SHA"]}
).encode()


def _streamed(app, body: bytes):
    """A body without Content-Length on a terminated stream: what gunicorn hands on for chunked."""
    return app.test_client().post(
        "/handshake/hello",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": None},
    )


@pytest.mark.parametrize(
    "body",
    [b'{"x": "' + b"a" * (2 * LIMIT) + b'"}', HELLO + b" " * LIMIT],
    ids=["cut inside a string", "a valid hello, then more than the limit"],
)
def test_a_streamed_body_over_the_limit_is_refused_not_cut(server_app, body):
    """werkzeug alone would hand the view the first LIMIT bytes: a cut body or, worse, a
    valid prefix that gets processed while the rest is dropped."""
    server_app.config["MAX_CONTENT_LENGTH"] = LIMIT
    assert_error(_streamed(server_app, body), 413, "body_too_large")


@pytest.mark.parametrize("padding", [0, 1], ids=["short", "exactly the limit"])
def test_a_streamed_body_within_the_limit_is_served(server_app, padding):
    server_app.config["MAX_CONTENT_LENGTH"] = LIMIT
    body = HELLO + b" " * ((LIMIT - len(HELLO)) * padding)
    assert _streamed(server_app, body).status_code == 200


# -- against a real gunicorn ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory) -> Iterator[tuple[str, int]]:
    """server_svc under gunicorn with its own settings file, MAX_BODY_BYTES=4096."""
    certs = tmp_path_factory.mktemp("certs")
    now = datetime.now(UTC)
    ca = pki.create_ca("Limits CA", now=now)
    leaf = pki.issue_server_certificate(ca, "server", now=now)
    (certs / "chain.pem").write_text("".join(pki.certificate_chain_pem([leaf.certificate])))
    (certs / "server.key").write_bytes(leaf.private_key_pem())
    port = _free_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_THREADS": "2",
        "SERVER_CERT_CHAIN": str(certs / "chain.pem"),
        "SERVER_KEY": str(certs / "server.key"),
        "MAX_BODY_BYTES": str(LIMIT),
        "LOG_LEVEL": "warning",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = certs / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(gunicorn), "-c", "server_svc/gunicorn.conf.py", "server_svc:create_app()"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_WITHIN_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = (
                        process.stderr.read().decode(errors="replace") if process.stderr else ""
                    )
                    pytest.fail(f"gunicorn did not start: {stderr[-2000:]}")
                time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length (what Flask sends for JSON)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.settimeout(10)
    return sock


def test_a_declared_length_over_the_limit_gets_413_before_the_body_is_sent(gunicorn_server):
    with _connect(gunicorn_server) as sock:
        sock.sendall(
            b"POST /handshake/hello HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n"
            b"\r\n"
        )
        # Not one byte of the body was sent: a server that waited for it would time out here.
        status, headers, body = _response(sock)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "body_too_large"


def test_a_chunked_body_over_the_limit_gets_413(gunicorn_server):
    with _connect(gunicorn_server) as sock:
        sock.sendall(
            b"POST /message HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"\r\n"
        )
        chunk = b" " * 1024
        for _ in range(LIMIT // len(chunk) + 1):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        # No final zero-length chunk: the server must stop at the limit, not at the end.
        status, _, body = _response(sock)
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "body_too_large"


def test_a_chunked_body_with_a_valid_start_over_the_limit_gets_413(gunicorn_server):
    with _connect(gunicorn_server) as sock:
        sock.sendall(_chunked_request("/handshake/hello", HELLO + b" " * LIMIT))
        status, _, body = _response(sock)
    assert status == 413, body


def test_a_chunked_body_within_the_limit_is_served(gunicorn_server):
    with _connect(gunicorn_server) as sock:
        sock.sendall(_chunked_request("/handshake/hello", HELLO))
        status, _, body = _response(sock)
    assert status == 200, body


def _chunked_request(path: str, body: bytes, chunk: int = 1000) -> bytes:
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces)
        + b"0\r\n\r\n"
    )


def test_a_body_within_the_limit_is_served(gunicorn_server):
    """The control: the same server answers a small body normally."""
    body = json.dumps(
        {"client_random": "00" * 32, "cipher_suites": ["TLS_RSA_WITH_AES_128_CBC_SHA"]}
    )
    with _connect(gunicorn_server) as sock:
        sock.sendall(
            b"POST /handshake/hello HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body.encode()
        )
        status, _, answer = _response(sock)
    assert status == 200
    assert len(json.loads(answer)["connection_id"]) == 32


# -- requests that are not valid HTTP: gunicorn answers, in the services' JSON -----------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, "bad_request", id="broken-request-line"),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
            400,
            "bad_request",
            id="space-in-header-name",
        ),
        pytest.param(
            b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request", id="http-9.9"
        ),
        pytest.param(
            b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri_too_long",
            id="request-line-too-long",
        ),
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-Filler-%d: v\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            "headers_too_large",
            id="too-many-headers",
        ),
        pytest.param(
            b"POST /message HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            "bad_request",
            id="unsupported-transfer-coding",
        ),
    ],
)
def test_a_request_that_is_not_valid_http_gets_a_json_error(
    gunicorn_server, request_bytes, status, code
):
    with _connect(gunicorn_server) as sock:
        sock.sendall(request_bytes)
        answer_status, headers, body = _response(sock)
    assert answer_status == status, body
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert b"<html" not in body.lower()


def test_the_server_still_serves_after_answering_bad_http(gunicorn_server):
    with _connect(gunicorn_server) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert _response(sock)[0] == 400
    with urllib.request.urlopen(f"http://{gunicorn_server[0]}:{gunicorn_server[1]}/healthz") as r:
        assert r.status == 200
