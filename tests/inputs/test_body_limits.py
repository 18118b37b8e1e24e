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
from collections.abc import Iterator

import pytest
from helpers.rawhttp import exchange, raw_request
from helpers.served import Service, launch, running, server_settings

from lab_common.contract import HEALTH, HELLO, MESSAGE

from .test_bad_bodies import assert_error

LIMIT = 4096
JSON = "application/json"


@pytest.mark.parametrize("side", ["server", "client"])
def test_a_body_over_the_limit_is_refused_in_json(server_app, client_app, side):
    app = server_app if side == "server" else client_app
    app.config["MAX_CONTENT_LENGTH"] = LIMIT
    path = MESSAGE
    response = app.test_client().post(
        path, data=b'{"x": "' + b"a" * LIMIT + b'"}', content_type="application/json"
    )
    assert_error(response, 413, "body_too_large")


HELLO_BODY = json.dumps(
    {"client_random": "00" * 32, "cipher_suites": ["TLS_RSA_WITH_AES_128_CBC_SHA"]}
).encode()


def _streamed(app, body: bytes):
    """A body without Content-Length on a terminated stream: what gunicorn hands on for chunked."""
    return app.test_client().post(
        HELLO,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": None},
    )


@pytest.mark.parametrize(
    "body",
    [b'{"x": "' + b"a" * (2 * LIMIT) + b'"}', HELLO_BODY + b" " * LIMIT],
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
    body = HELLO_BODY + b" " * ((LIMIT - len(HELLO_BODY)) * padding)
    assert _streamed(server_app, body).status_code == 200


# -- against a real gunicorn ------------------------------------------------------------


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory, pair_certificates) -> Iterator[Service]:
    """server_svc under gunicorn with its own settings file, MAX_BODY_BYTES=4096."""
    settings = server_settings(pair_certificates, GUNICORN_THREADS="2", MAX_BODY_BYTES=str(LIMIT))
    server = launch("server_svc", tmp_path_factory.mktemp("limits"), settings)
    with running(server):
        yield server


def test_a_declared_length_over_the_limit_gets_413_before_the_body_is_sent(gunicorn_server):
    # Not one byte of the body is sent: a server that waited for it would time out here.
    answer = exchange(
        gunicorn_server.address,
        (
            f"POST {HELLO} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 1000000000\r\n"
            "\r\n"
        ).encode(),
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/json"
    assert answer.get_json()["error"]["code"] == "body_too_large"


def test_a_chunked_body_over_the_limit_gets_413(gunicorn_server):
    chunk = b" " * 1024
    # No final zero-length chunk: the server must stop at the limit, not at the end.
    answer = exchange(
        gunicorn_server.address,
        (
            f"POST {MESSAGE} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n"
            "\r\n"
        ).encode()
        + (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * (LIMIT // len(chunk) + 1),
    )
    assert answer.status_code == 413, answer.body
    assert answer.get_json()["error"]["code"] == "body_too_large"


def test_a_chunked_body_with_a_valid_start_over_the_limit_gets_413(gunicorn_server):
    request = raw_request("POST", HELLO, HELLO_BODY + b" " * LIMIT, JSON, chunk=1000)
    answer = exchange(gunicorn_server.address, request)
    assert answer.status_code == 413, answer.body


def test_a_chunked_body_within_the_limit_is_served(gunicorn_server):
    answer = exchange(
        gunicorn_server.address, raw_request("POST", HELLO, HELLO_BODY, JSON, chunk=1000)
    )
    assert answer.status_code == 200, answer.body


def test_a_body_within_the_limit_is_served(gunicorn_server):
    """The control: the same server answers a small body normally."""
    body = json.dumps(
        {"client_random": "00" * 32, "cipher_suites": ["TLS_RSA_WITH_AES_128_CBC_SHA"]}
    )
    answer = exchange(gunicorn_server.address, raw_request("POST", HELLO, body.encode(), JSON))
    assert answer.status_code == 200
    assert len(answer.get_json()["connection_id"]) == 32


# -- requests that are not valid HTTP: gunicorn answers, in the services' JSON -----------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, "bad_request", id="broken-request-line"),
        pytest.param(
            f"GET {HEALTH} HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n".encode(),
            400,
            "bad_request",
            id="space-in-header-name",
        ),
        pytest.param(
            f"GET {HEALTH} HTTP/9.9\r\nHost: x\r\n\r\n".encode(), 400, "bad_request", id="http-9.9"
        ),
        pytest.param(
            b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri_too_long",
            id="request-line-too-long",
        ),
        pytest.param(
            f"GET {HEALTH} HTTP/1.1\r\nHost: x\r\n".encode()
            + b"".join(b"X-Filler-%d: v\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            "headers_too_large",
            id="too-many-headers",
        ),
        pytest.param(
            f"POST {MESSAGE} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".encode(),
            400,
            "bad_request",
            id="unsupported-transfer-coding",
        ),
    ],
)
def test_a_request_that_is_not_valid_http_gets_a_json_error(
    gunicorn_server, request_bytes, status, code
):
    answer = exchange(gunicorn_server.address, request_bytes)
    assert answer.status_code == status, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    error = answer.get_json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert b"<html" not in answer.body.lower()


def test_the_server_still_serves_after_answering_bad_http(gunicorn_server):
    assert exchange(gunicorn_server.address, b"GARBAGE\r\n\r\n").status_code == 400
    assert gunicorn_server.http().get(HEALTH).status_code == 200
