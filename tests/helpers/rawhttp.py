"""HTTP to the services that :mod:`helpers.served` runs, straight to 127.0.0.1 (no proxy from the
environment): a stand-in for Flask's test client (:class:`LiveHttp`), requests with exactly the
headers a test chooses (:func:`call`), bytes sent as they are, chunked bodies included
(:func:`raw_request`, :func:`exchange`), and what the services tell about themselves
(GET /healthz, /metrics).
"""

from __future__ import annotations

import contextlib
import http.client
import json as jsonlib
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families
from werkzeug.datastructures import Headers

from lab_common.contract import HEALTH, METRICS

if TYPE_CHECKING:
    from .served import LiveLab

TIMEOUT_S = 30.0


class LiveResponse:
    """The parts of a Flask test response that the tests use, from a real answer; its headers
    are looked up without regard to case, as Flask's are."""

    def __init__(
        self, status: int, headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes
    ) -> None:
        self.status_code = status
        self.headers = Headers(headers)
        self.body = body

    @property
    def mimetype(self) -> str:
        return str(self.headers.get("Content-Type", "")).split(";")[0].strip()

    def get_data(self, as_text: bool = False) -> Any:
        return self.body.decode() if as_text else self.body

    def get_json(self) -> Any:
        return jsonlib.loads(self.body)


class LiveHttp:
    """A stand-in for Flask's test client (``open``, ``post``, ``get``) that talks to a real
    server, so :class:`helpers.peer.Peer` can run handshakes over the network."""

    def __init__(self, address: tuple[str, int], timeout: float = TIMEOUT_S) -> None:
        self.address = address
        self.timeout = timeout

    def open(
        self,
        path: str,
        method: str = "GET",
        *,
        data: bytes | str | None = None,
        content_type: str | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> LiveResponse:
        if json is not None:
            data, content_type = jsonlib.dumps(json), "application/json"
        body = data.encode() if isinstance(data, str) else data
        sent = dict(headers or {})
        if content_type is not None:
            sent["Content-Type"] = content_type
        connection = http.client.HTTPConnection(*self.address, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=sent)
            answer = connection.getresponse()
            return LiveResponse(answer.status, answer.getheaders(), answer.read())
        finally:
            connection.close()

    def post(self, path: str, **kwargs: Any) -> LiveResponse:
        return self.open(path, "POST", **kwargs)

    def get(self, path: str, **kwargs: Any) -> LiveResponse:
        return self.open(path, "GET", **kwargs)


def call_json(
    port: int, method: str, path: str, body: Any = None, *, timeout: float = 60.0
) -> tuple[int, Any]:
    """One request to 127.0.0.1:<port>, (status, JSON answer or None); a JSON body is sent as
    UTF-8 (not \\u escapes), so a message of N bytes of UTF-8 is N bytes on the wire."""
    live = LiveHttp(("127.0.0.1", port), timeout)
    if body is None:
        answer = live.open(path, method)
    else:
        data = jsonlib.dumps(body, ensure_ascii=False).encode()
        answer = live.open(path, method, data=data, content_type="application/json")
    return answer.status_code, answer.get_json() if answer.body else None


# -- exactly these headers -------------------------------------------------------------------


def address(base_url: str) -> tuple[str, int]:
    """(host, port) of one of the lab's loopback URLs."""
    parts = urlsplit(base_url)
    assert parts.hostname == "127.0.0.1" and parts.port
    return parts.hostname, parts.port


def call(
    base_url: str,
    method: str,
    path: str,
    *,
    host: str | None = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | bytes | None = None,
) -> tuple[int, str, bytes]:
    """One request with exactly these headers (``host=None``: no Host at all) and a JSON body
    (an object, or bytes as they are); returns (status, content type, body)."""
    connection = http.client.HTTPConnection(*address(base_url), timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        data = jsonlib.dumps(body).encode() if isinstance(body, dict) else body or b""
        if body is not None:
            connection.putheader("Content-Type", "application/json")
        if body is not None or method not in ("GET", "HEAD"):
            connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data or None)
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type", ""), answer.read()
    finally:
        connection.close()


def error_code(status_type_body: tuple[int, str, bytes]) -> str:
    _, content_type, body = status_type_body
    assert content_type == "application/json", body[:200]
    error = jsonlib.loads(body)["error"]
    assert isinstance(error["message"], str) and error["message"]
    return str(error["code"])


def health(base_url: str) -> dict[str, Any]:
    status, _, body = call(base_url, "GET", HEALTH)
    assert status == 200, body
    answer: dict[str, Any] = jsonlib.loads(body)
    return answer


def connections(lab: LiveLab) -> tuple[int, int]:
    """(client_svc's, server_svc's) connection counts: any handshake moves at least one."""
    return health(lab.client_url)["connections"], health(lab.server_url)["connections"]


def scrape(base_url: str) -> str:
    status, _, body = call(base_url, "GET", METRICS)
    assert status == 200, body[:500]
    return body.decode()


def failures(base_url: str, code: str) -> float:
    for family in text_string_to_metric_families(scrape(base_url)):
        for sample in family.samples:
            if sample.name == "tls_lab_failures_total" and sample.labels.get("code") == code:
                return float(sample.value)
    return 0.0


# -- bytes as they are -----------------------------------------------------------------------


def raw_request(
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str | None = None,
    *,
    chunk: int | None = None,
) -> bytes:
    """A whole HTTP/1.1 request: ``body`` with a Content-Length, or in chunks of ``chunk``
    bytes (Transfer-Encoding: chunked, final chunk included)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if chunk is None:
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    size_line = f"{chunk:x}\r\n".encode()
    whole = len(body) - len(body) % chunk
    framed = b"".join(size_line + body[i : i + chunk] + b"\r\n" for i in range(0, whole, chunk))
    if whole < len(body):
        framed += f"{len(body) - whole:x}\r\n".encode() + body[whole:] + b"\r\n"
    return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + framed + b"0\r\n\r\n"


def exchange(address: tuple[str, int], request: bytes) -> LiveResponse:
    """Send raw request bytes on a new connection and read one answer (with Content-Length).

    The request is sent from a thread of its own while the answer is read: a server that
    answers before reading the whole body (a 413) must not leave the sender blocked.
    """
    with socket.create_connection(address, timeout=TIMEOUT_S) as sock:
        sender = threading.Thread(target=_send_all, args=(sock, request), daemon=True)
        sender.start()
        try:
            return _read_answer(sock)
        finally:
            sender.join(timeout=TIMEOUT_S)


def _send_all(sock: socket.socket, data: bytes) -> None:
    # The server may answer and close before taking it all: that is allowed.
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _read_answer(sock: socket.socket) -> LiveResponse:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = Headers()
    for line in lines:
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    length = int(headers.get("Content-Length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer"
        body += chunk
    return LiveResponse(int(status_line.split()[1]), headers, body[:length])
