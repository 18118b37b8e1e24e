"""Requests to the live lab with exactly the headers a test chooses (Host, Origin, Sec-Fetch-*),
and what the lab tells about itself: connection counts (GET /healthz), failure counters (/metrics).
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from .live import LiveLab

TIMEOUT_S = 10


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
    body: dict[str, Any] | None = None,
) -> tuple[int, str, bytes]:
    """One request with exactly these headers (``host=None``: no Host at all); returns
    (status, content type, body)."""
    connection = http.client.HTTPConnection(*address(base_url), timeout=TIMEOUT_S)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        data = b"" if body is None else json.dumps(body).encode()
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
    error = json.loads(body)["error"]
    assert isinstance(error["message"], str) and error["message"]
    return str(error["code"])


def health(base_url: str) -> dict[str, Any]:
    status, _, body = call(base_url, "GET", "/healthz")
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def connections(lab: LiveLab) -> tuple[int, int]:
    """(client_svc's, server_svc's) connection counts: any handshake moves at least one."""
    return health(lab.client_url)["connections"], health(lab.server_url)["connections"]


def scrape(base_url: str) -> str:
    status, _, body = call(base_url, "GET", "/metrics")
    assert status == 200
    return body.decode()


def failures(base_url: str, code: str) -> float:
    for family in text_string_to_metric_families(scrape(base_url)):
        for sample in family.samples:
            if sample.name == "tls_lab_failures_total" and sample.labels.get("code") == code:
                return float(sample.value)
    return 0.0


def raw_exchange(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; read one answer with a Content-Length."""
    with socket.create_connection(address(base_url), timeout=TIMEOUT_S) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed before an answer: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines)}
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            assert chunk, "closed inside the body"
            body += chunk
    return int(status_line.split()[1]), headers, body
