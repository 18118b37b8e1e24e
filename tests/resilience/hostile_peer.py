"""A server_svc that is not ours: an HTTP/1.1 server on 127.0.0.1 that answers client_svc badly.

:class:`HostilePeer` speaks just enough HTTP/1.1 (keep-alive, Content-Length request bodies) to
sit where server_svc would. A path can get a behaviour; any other request is forwarded to a real
server_svc and its answer passed back, so a handshake succeeds and a later answer misbehaves.
The behaviours: an answer far over client_svc's size bound (declared by Content-Length, chunked,
or until the connection closes), an answer dribbled one byte at a time, and a 413 sent from the
request's headers alone before the connection is closed under a body still being written.

Everything is bounded: bytes written, time spent, socket timeouts; the threads are daemons and
end when the peer is closed.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .netfaults import ThreadedListener

_IDLE_S = 30.0  # a connection with no request for this long is closed
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_MAX_REQUESTS = 1000  # per connection
_FILLER = b"x" * 65536


@dataclass
class Exchange:
    """One request, as a behaviour sees it: read (or not) its body, answer, say what happened."""

    peer: HostilePeer
    sock: socket.socket
    reader: io.BufferedReader
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None

    def read_body(self) -> bytes:
        if self.body is None:
            length = int(self.headers.get("content-length") or 0)
            if length > _MAX_BODY:
                raise ValueError("request body too large for the peer")
            self.body = self.reader.read(length) if length else b""
        return self.body

    def forward(self) -> tuple[int, bytes]:
        """Pass the request to the real server_svc; its status and body."""
        assert self.peer.upstream_port is not None, "this peer has no server_svc behind it"
        upstream = http.client.HTTPConnection("127.0.0.1", self.peer.upstream_port, timeout=30)
        try:
            headers = {"Content-Type": self.headers.get("content-type", "application/json")}
            upstream.request(self.method, self.path, body=self.read_body(), headers=headers)
            response = upstream.getresponse()
            return response.status, response.read()
        finally:
            upstream.close()

    def write(self, data: bytes) -> bool:
        """Send ``data``; False once client_svc has gone away."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        with self.peer.lock:
            self.peer.written[self.path] = self.peer.written.get(self.path, 0) + len(data)
        return True


#: Answers one exchange; returns whether the connection may carry another request.
Behaviour = Callable[[Exchange], bool]


def head(status: int, **headers: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def forward(exchange: Exchange) -> bool:
    status, body = exchange.forward()
    return exchange.write(
        head(status, Content_Type="application/json", Content_Length=len(body)) + body
    )


def oversized(total: int, framing: str, *, forward_first: bool = False) -> Behaviour:
    """An answer of ``total`` bytes (far more than client_svc should read), framed by
    ``Content-Length``, as ``chunked``, or until ``close``. With ``forward_first`` the request
    reaches server_svc first (it processes the message); else its body is just read."""

    def behave(exchange: Exchange) -> bool:
        if forward_first:
            exchange.forward()
        else:
            exchange.read_body()
        if framing == "length":
            start = head(200, Content_Type="application/json", Content_Length=total)
        elif framing == "chunked":
            start = head(200, Content_Type="application/json", Transfer_Encoding="chunked")
        else:
            start = head(200, Content_Type="application/json", Connection="close")
        opening, piece = b'{"record": "', _FILLER
        if framing == "chunked":
            opening = _chunk(opening)
            piece = _chunk(_FILLER)
        if not exchange.write(start + opening):
            return False
        for _ in range(total // len(_FILLER)):
            if not exchange.write(piece):
                return False  # client_svc stopped reading: what it should do
        if framing == "chunked":
            exchange.write(b"0\r\n\r\n")
        return False

    return behave


def dribbled(interval: float, longest: float, *, forward_first: bool) -> Behaviour:
    """The answer (server_svc's, with ``forward_first``) one byte every ``interval`` seconds,
    for at most ``longest`` seconds; then the connection is closed."""

    def behave(exchange: Exchange) -> bool:
        if forward_first:
            status, body = exchange.forward()
        else:
            exchange.read_body()
            status, body = 200, b'{"connection_id": "' + b"0" * 32 + b'"}'
        answer = head(status, Content_Type="application/json", Content_Length=len(body)) + body
        stop = time.monotonic() + longest
        for byte in answer:
            if time.monotonic() >= stop or exchange.peer.closed.is_set():
                break
            if not exchange.write(bytes((byte,))):
                break
            time.sleep(interval)
        return False

    return behave


def refused_from_headers(exchange: Exchange) -> bool:
    """What a server does with a declared body over its limit: 413 from the headers alone, and
    close without reading the body (the kernel then resets the connection under the client's
    write)."""
    body = json.dumps(
        {"error": {"code": "body_too_large", "message": "request body larger than 1024 bytes"}}
    ).encode()
    exchange.write(
        head(413, Content_Type="application/json", Content_Length=len(body), Connection="close")
        + body
    )
    return False


@dataclass
class HostilePeer(ThreadedListener):
    """The peer: ``behaviours`` by path (change them at any time), forwarding otherwise."""

    upstream_port: int | None = None
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    #: Bytes written to client_svc per path (answers only), and the paths requested.
    written: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(backlog=64, socket_timeout=_IDLE_S)

    def _accepted(self, sock: socket.socket) -> None:
        self._spawn(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        reader = sock.makefile("rb")
        try:
            for _ in range(_MAX_REQUESTS):
                exchange = self._read_head(sock, reader)
                if exchange is None:
                    return
                with self.lock:
                    self.requests.append(exchange.path)
                behaviour = self.behaviours.get(exchange.path, forward)
                if not behaviour(exchange):
                    return
        except (OSError, ValueError):
            return
        finally:
            reader.close()
            with contextlib.suppress(OSError):
                sock.close()

    def _read_head(self, sock: socket.socket, reader: io.BufferedReader) -> Exchange | None:
        line = reader.readline(_MAX_HEAD)
        if not line.strip():
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        for _ in range(100):
            line = reader.readline(_MAX_HEAD)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return Exchange(self, sock, reader, method, path, headers)
