"""How client_svc talks to server_svc: keep-alive HTTP connections with firm limits.

Each call has a deadline (connect within the connect timeout, then send the request and read the
whole answer within the read timeout) and its answer a size bound, so a server that is not ours
(a man in the middle) can neither hold a thread for long nor fill the worker's memory.
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
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from lab_common.contract import CONNECTION_HEADER
from lab_common.errors import ServiceError
from lab_common.settings import MAX_BODY_LIMIT

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from .config import ClientSettings

#: The default of UPSTREAM_MAX_RESPONSE_BYTES: 12 MiB. server_svc's largest answer is the
#: /message echo of the largest plaintext (the echo is a ~55-byte header and the plaintext).
#: MAX_BODY_BYTES is at most MAX_BODY_LIMIT (8 MiB); 8 MiB of plaintext echoed in the suite
#: that adds most (AES-256-CBC-SHA384, MAC-then-encrypt: 16,469 bytes per full record) is
#: 8,432,261 bytes of records, and server_svc's JSON answer 11,243,147 bytes. At the default
#: MAX_BODY_BYTES (4 MiB) it is 5,621,727. (client_svc refuses a message whose request would not
#: fit server_svc's limit, so an echo is in fact at most that limit plus about 150 bytes.)
#: tests/resilience/test_hostile_upstream.py checks the sum.
MAX_RESPONSE_BYTES = MAX_BODY_LIMIT * 3 // 2
#: What an answer may add to its body: status line, headers, chunk framing. http.client's own
#: limits (100 headers of 64 KiB) would allow 6.4 MB; server_svc sends about 200 bytes.
ANSWER_HEAD_ALLOWANCE = 64 * 1024


def encode_body(body: dict[str, Any]) -> bytes:
    """The bytes of a JSON request body, as :class:`HttpTransport` sends them."""
    return orjson.dumps(body)


#: The status of a refusal by server_svc that client_svc passes on as its own: the caller can
#: act on these (handshake again; send less). Any other refusal is a 502.
_PEER_STATUSES = {
    "unknown_connection": 409,
    "body_too_large": 413,
    # Passed on as they are: the client can try again (docs/scaling.md).
    "state_unavailable": 503,
    "connection_busy": 503,
}


class PeerError(ServiceError):
    """server_svc refused a request; carries the server's error code."""

    def __init__(self, code: str, message: str, peer_status: int) -> None:
        status = _PEER_STATUSES.get(code, 502)
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


class _AnswerTooLarge(Exception):
    """The answer went past the call's byte budget."""


class _CallSocket(socket.socket):
    """A TCP socket whose every call to server_svc has one deadline and one byte budget.

    http.client writes through ``sendall`` and reads through ``recv_into``; each waits at most
    until the call's deadline. A timeout set once bounds each wait only, so a peer that sends a
    byte now and then could hold a call for as long as it likes. The reads of one call stop at
    its budget, however the answer is framed (headers, Content-Length, chunks, or until close).
    """

    deadline = 0.0
    budget = 0

    @classmethod
    def adopt(cls, sock: socket.socket) -> _CallSocket:
        """The same connection (same descriptor, same options) as a :class:`_CallSocket`."""
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())

    def start_call(self, seconds: float, budget: int) -> None:
        self.deadline = time.monotonic() + seconds
        self.budget = budget

    def _wait_until_deadline(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the call's deadline has passed")
        self.settimeout(remaining)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        if self.budget <= 0:
            raise _AnswerTooLarge
        self._wait_until_deadline()
        wanted = min(nbytes or memoryview(buffer).nbytes, self.budget)
        received = super().recv_into(buffer, wanted, flags)
        self.budget -= received
        return received

    def sendall(self, data: ReadableBuffer, flags: int = 0, /) -> None:
        # With a timeout, sendall's timeout bounds the whole send (Python 3.5+).
        self._wait_until_deadline()
        super().sendall(data, flags)


class Transport(Protocol):
    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]: ...


class HttpTransport:
    """Keep-alive HTTP/1.1 connections to server_svc, one per request thread (``http.client``).

    A call gets ``connect_timeout`` to connect, then ``read_timeout`` for the rest: sending the
    request and reading the whole answer, which may be at most ``max_response_bytes`` long
    (a longer declared Content-Length is refused before a byte of the body is read).

    A gunicorn worker serves requests on a fixed set of threads, so a connection per thread is
    a pool without locks: each thread reuses its own socket for every call. This costs about half
    of urllib3's client CPU per call (docs/performance.md), and a handshake makes two calls.
    A request is never retried (a retried POST could deliver a record twice); a kept-alive
    connection that server_svc has closed meanwhile is noticed before the request is written,
    and replaced.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"server URL must be http://host[:port][/path], not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    @classmethod
    def from_settings(cls, base_url: str, settings: ClientSettings) -> HttpTransport:
        """A transport to ``base_url`` with client_svc's upstream limits (README, Configuration)."""
        return cls(
            base_url,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            max_response_bytes=settings.upstream_max_response_bytes,
        )

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        payload = None if body is None else encode_body(body)
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection_id = body.get("connection_id") if body is not None else None
        if isinstance(connection_id, str):
            # A load balancer in front of server_svc's replicas hashes on it (haproxy.cfg).
            headers[CONNECTION_HEADER] = connection_id
        connection = self._connection()
        sock = connection.sock
        assert isinstance(sock, _CallSocket)
        sock.start_call(self.read_timeout, self.max_response_bytes + ANSWER_HEAD_ALLOWANCE)
        write_broke = False
        try:
            try:
                connection.request(method, self.prefix + path, body=payload, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                # server_svc may have answered and closed before it took the whole body (a 413
                # from the headers alone); if its answer is there, it says what happened.
                write_broke = True
            response = connection.getresponse()
            with response:  # closed whatever happens: a half-read answer holds the socket
                data = self._read_answer(response)
        except TimeoutError:
            self._discard(connection)
            raise UpstreamError(
                "upstream_timeout",
                f"server_svc did not answer within {self.read_timeout:g} s "
                "(UPSTREAM_READ_TIMEOUT bounds the whole answer)",
                504,
                sent=True,
            ) from None
        except _AnswerTooLarge:
            self._discard(connection)
            raise UpstreamError(
                "upstream_bad_response",
                "server_svc's answer is larger than UPSTREAM_MAX_RESPONSE_BYTES "
                f"({self.max_response_bytes} bytes); client_svc stopped reading it",
                502,
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
        if write_broke or response.will_close or response.status == 413:
            # After a 413 the server may have left the body unread, and may close the
            # connection at any moment (gunicorn does, after promising keep-alive).
            self._discard(connection)
        return response.status, data

    def _read_answer(self, response: http.client.HTTPResponse) -> bytes:
        """The answer's body, at most ``max_response_bytes`` of it (else _AnswerTooLarge)."""
        limit = self.max_response_bytes
        if response.length is not None:
            if response.length > limit:
                raise _AnswerTooLarge  # declared: refused without reading the body
            return response.read()  # exactly that long, or IncompleteRead
        # Chunked, or until the connection closes: one byte past the limit tells.
        data = response.read(limit + 1)
        if len(data) > limit:
            raise _AnswerTooLarge
        return data

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
        connection.sock = _CallSocket.adopt(connection.sock)  # keeps http.client's TCP_NODELAY
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
    """Calls server_svc over a :class:`Transport`; its JSON errors become :class:`PeerError`."""

    def __init__(self, transport: Transport, *, max_request_bytes: int | None = None) -> None:
        self.transport = transport
        #: server_svc's body limit (its MAX_BODY_BYTES), as far as client_svc knows it
        #: (SERVER_MAX_BODY_BYTES); None: unknown, nothing is refused before it is sent.
        self.max_request_bytes = max_request_bytes

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
            error = decoded.get("error")
            if not isinstance(error, dict):
                error = {}
            raise PeerError(
                str(error.get("code", "peer_error")), str(error.get("message", "")), status
            )
        return decoded
