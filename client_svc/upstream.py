"""How client_svc talks to server_svc: keep-alive HTTP connections with firm timeouts.

Transport failures become clear 502/504 :class:`UpstreamError`\\ s that also say whether the
request may have reached server_svc (``sent``), which decides what the caller is told about a
message's delivery (docs/resilience.md). The server's own JSON errors become
:class:`PeerError` with the server's code, so the caller sees which side refused.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import urllib.parse
from typing import Any, Protocol

import orjson

from lab_common.errors import ServiceError


class PeerError(ServiceError):
    """server_svc refused a request; carries the server's error code."""

    def __init__(self, code: str, message: str, peer_status: int) -> None:
        status = 409 if code == "unknown_connection" else 502
        super().__init__(
            code,
            f"server_svc refused: {message}",
            status,
            peer="server",
            peer_status=peer_status,
        )
        self.peer_status = peer_status


class UpstreamError(ServiceError):
    """No answer from server_svc.

    ``sent`` is False only when the request certainly never left client_svc (no connection
    could be made); True means it may have reached server_svc, and may have been processed.
    """

    def __init__(self, code: str, message: str, status: int, *, sent: bool) -> None:
        super().__init__(code, message, status)
        self.sent = sent


class Transport(Protocol):
    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]: ...


class HttpTransport:
    """Keep-alive HTTP/1.1 connections to server_svc, one per request thread (``http.client``).

    A gunicorn worker serves requests on a fixed set of threads, so a connection per thread is
    a pool without locks: each thread reuses its own socket for every call. This costs about half
    of urllib3's client CPU per call (docs/performance.md), and a handshake makes two calls.
    A request is never retried (a retried POST could deliver a record twice); a kept-alive
    connection that server_svc has closed meanwhile is noticed before the request is written,
    and replaced.
    """

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"server URL must be http://host[:port][/path], not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        payload = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection = self._connection()
        try:
            connection.request(method, self.prefix + path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except TimeoutError:
            self._discard(connection)
            raise UpstreamError(
                "upstream_timeout",
                f"server_svc did not answer within {self.read_timeout:g} s",
                504,
                sent=True,
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            # The connection broke during the request: it may have been read, even processed.
            self._discard(connection)
            raise UpstreamError(
                "upstream_unavailable",
                f"the connection to server_svc broke during the request ({type(exc).__name__})",
                502,
                sent=True,
            ) from None
        if response.will_close:
            self._discard(connection)
        return response.status, data

    def close(self) -> None:
        """Close every thread's connection (each thread opens a new one when it next calls)."""
        with self._lock:
            for connection in self._open:
                connection.close()
            self._open.clear()

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None and not _dropped(connection.sock):
            return connection
        if connection is not None:
            self._discard(connection)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        try:
            connection.connect()
        except TimeoutError:
            connection.close()
            raise UpstreamError(
                "upstream_timeout",
                f"server_svc did not accept a connection within {self.connect_timeout:g} s",
                504,
                sent=False,
            ) from None
        except OSError as exc:
            # Refused, unreachable, or the name does not resolve: nothing was sent.
            connection.close()
            raise UpstreamError(
                "upstream_unavailable",
                f"server_svc is unreachable: no connection to {self.base_url} "
                f"({type(exc).__name__})",
                502,
                sent=False,
            ) from None
        assert connection.sock is not None
        connection.sock.settimeout(self.read_timeout)  # http.client has set TCP_NODELAY
        self._local.connection = connection
        with self._lock:
            self._open.add(connection)
        return connection

    def _discard(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            self._open.discard(connection)


def _dropped(sock: socket.socket) -> bool:
    """True when an idle kept-alive socket is readable: the peer closed it (or sent something
    unasked), so it must not carry another request. Nothing is read."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class ServerClient:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, data = self.transport.request(method, path, body)
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            raise ServiceError(
                "upstream_bad_response",
                f"server_svc answered {status} without JSON",
                502,
                peer_status=status,
            )
        if status >= 400:
            error = decoded.get("error") if isinstance(decoded.get("error"), dict) else {}
            raise PeerError(
                str(error.get("code", "peer_error")), str(error.get("message", "")), status
            )
        return decoded
