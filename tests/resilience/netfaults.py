"""Real sockets on 127.0.0.1 that misbehave: for client_svc's HTTP transport and its timeouts.

* :func:`serve_app` runs a Flask app on a real HTTP server in a thread; :func:`serve_keep_alive`
  does too, keeping HTTP/1.1 connections open between requests as gunicorn does.
* :class:`FaultyProxy` forwards TCP between client_svc and that server, and can stop passing
  requests on (``blackhole``: the server never sees them), stop passing answers back
  (``drop_replies``: the server processed the request, the client never hears), delay answers,
  or refuse new connections.
* :func:`silent_listener` accepts TCP connections (the kernel does, from its backlog) and never
  answers; :func:`full_listener` has a full accept queue, so connecting times out;
  :func:`closed_port` is a port nothing listens on.

Everything is bounded: sockets have timeouts, threads are daemons that stop when closed, and
each helper closes what it opened when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from flask import Flask
from werkzeug.serving import make_server

_POLL = 0.05  # how often blocked threads look at the clock and the closed flag


class _KeepAliveServer(ThreadingHTTPServer):
    daemon_threads = True


def _keep_alive_handler(app: Flask) -> type[BaseHTTPRequestHandler]:
    """An HTTP/1.1 handler that keeps connections open between requests, as gunicorn does, and
    answers each request through ``app`` (werkzeug's development server always closes them)."""
    client = app.test_client()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            response = client.open(
                self.path,
                method=self.command,
                data=body,
                content_type=self.headers.get("Content-Type"),
            )
            data = response.get_data()
            self.send_response(response.status_code)
            self.send_header("Content-Type", response.content_type or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve_keep_alive(app: Flask) -> Iterator[int]:
    """``app`` on http://127.0.0.1:<port> over keep-alive HTTP/1.1 connections; yields the port."""
    server = _KeepAliveServer(("127.0.0.1", 0), _keep_alive_handler(app))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": _POLL})
    thread.daemon = True
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def serve_app(app: Flask) -> Iterator[int]:
    """``app`` on http://127.0.0.1:<port>, threaded; yields the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": _POLL})
    thread.daemon = True
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port whose connections are accepted (by the kernel backlog) and never answered."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@contextlib.contextmanager
def full_listener() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops new SYNs, so connecting times out."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = int(listener.getsockname()[1])
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)  # the one queued slot
    try:
        yield port
    finally:
        filler.close()
        listener.close()


def closed_port() -> int:
    """A port that was free a moment ago and has no listener: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThreadedListener:
    """A TCP listener on a free port of 127.0.0.1 that hands each accepted connection to
    :meth:`_accepted` and keeps every socket and thread it makes, so that :meth:`close` ends
    them all: the skeleton of the tests' own misbehaving peers and proxies."""

    def __init__(self, *, backlog: int = 16, socket_timeout: float = _POLL) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self._listener.settimeout(_POLL)
        self.port = int(self._listener.getsockname()[1])
        self._socket_timeout = socket_timeout
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = self._spawn(self._accept_loop)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _accepted(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _spawn(self, target: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self._threads.append(thread)
        thread.start()
        return thread

    def _track(self, sock: socket.socket) -> None:
        sock.settimeout(self._socket_timeout)
        with self.lock:
            self._sockets.append(sock)

    def _accept_loop(self) -> None:
        while not self.closed.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            self._track(sock)
            self._accepted(sock)

    def _shut_down_sockets(self) -> list[socket.socket]:
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return sockets

    def close(self) -> None:
        self.closed.set()
        self._listener.close()
        for sock in self._shut_down_sockets():
            with contextlib.suppress(OSError):
                sock.close()
        with self.lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)


class FaultyProxy(ThreadedListener):
    """A TCP proxy on 127.0.0.1 whose ``mode`` can change at any time, mid-connection too.

    Modes: ``forward``, ``blackhole`` (requests are read and dropped), ``drop_replies``
    (requests reach the server, answers are dropped); ``reply_delay`` delays each answer.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "forward"
        self.reply_delay = 0.0
        self.accepted = 0  # connections accepted so far
        super().__init__()

    def _accepted(self, downstream: socket.socket) -> None:
        self.accepted += 1
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            downstream.close()
            return
        self._track(upstream)
        self._spawn(self._pump, downstream, upstream, "request")
        self._spawn(self._pump, upstream, downstream, "reply")

    def _pump(self, source: socket.socket, target: socket.socket, direction: str) -> None:
        while not self.closed.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                if direction == "reply" and self.mode == "drop_replies":
                    # The server is done, but the client must never learn it: a silent peer.
                    return
                break
            if direction == "request" and self.mode == "blackhole":
                continue
            if direction == "reply":
                if self.mode == "drop_replies":
                    continue
                if self.reply_delay:
                    time.sleep(self.reply_delay)
            try:
                target.sendall(data)
            except OSError:
                break
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Close every open connection and keep listening, as a server that closes idle
        keep-alive connections does."""
        self._shut_down_sockets()

    def refuse(self) -> None:
        """Stop listening and cut every open connection: from now on, connecting is refused."""
        # shutdown() wakes the blocked accept(); only once it has returned is the port closed
        # (until then the kernel would still queue connections, then reset them).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(2)
        self._shut_down_sockets()
