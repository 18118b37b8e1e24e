"""server_svc and client_svc under a real gunicorn on free loopback ports, for the input tests.

The services run with their own gunicorn settings files and the in-memory pair's identity
(tests/kdf/pair.py), so :class:`attacks.peer.Peer` can run real handshakes against them over
HTTP (:class:`LiveHttp`). :func:`cpu_seconds` reads the CPU time a worker process has used.
The processes are started here and stopped here, by their own PIDs.
"""

from __future__ import annotations

import contextlib
import http.client
import json as jsonlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdf.pair import identity

from client_svc.config import DEFAULTS as CLIENT_DEFAULTS
from lab_common.settings import ALIASES
from server_svc.config import DEFAULTS as SERVER_DEFAULTS

REPO_ROOT = Path(__file__).resolve().parents[2]
START_WITHIN_S = 30.0
STOP_WITHIN_S = 10.0
#: Settings a developer's environment must not pass on to the services under test.
_SETTINGS = {*SERVER_DEFAULTS, *CLIENT_DEFAULTS, *ALIASES, "PORT", "GUNICORN_BIND"}


@dataclass
class Served:
    """One service under gunicorn: its master process, address and log."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pid(self) -> int:
        """The PID of the one worker (gunicorn_settings.workers is 1)."""
        children = _children(self.process.pid)
        assert len(children) == 1, f"{self.name}: expected one worker, found {children}"
        return children[0]

    def http(self) -> LiveHttp:
        return LiveHttp(self.address)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_WITHIN_S)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_identity(directory: Path) -> tuple[Path, Path, Path]:
    """The pair's server chain, key and CA as files: (chain.pem, server.key, ca.pem)."""
    ca, leaf = identity()
    directory.mkdir(parents=True, exist_ok=True)
    chain, key, trust = directory / "chain.pem", directory / "server.key", directory / "ca.pem"
    chain.write_bytes(leaf.certificate_pem())
    key.write_bytes(leaf.private_key_pem())
    trust.write_bytes(ca.certificate_pem())
    return chain, key, trust


def start(name: str, workdir: Path, settings: Mapping[str, str]) -> Served:
    """``name`` ("server_svc" or "client_svc") under gunicorn with ``settings``; answers /healthz."""
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update({"LOG_LEVEL": "warning", **settings})
    port = free_port()
    log = workdir / f"{name}-{port}.log"
    command = [sys.executable, "-m", "gunicorn", "-c", f"{name}/gunicorn.conf.py"]
    command += ["--bind", f"127.0.0.1:{port}", f"{name}:create_app()"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    served = Served(name, process, port, log)
    deadline = time.monotonic() + START_WITHIN_S
    while True:
        try:
            if served.http().get("/healthz").status_code == 200:
                return served
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            served.stop()
            raise RuntimeError(f"{name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def start_server(workdir: Path, **settings: str) -> Served:
    chain, key, _ = write_identity(workdir / "identity")
    return start(
        "server_svc",
        workdir,
        {"SERVER_CERT_CHAIN": str(chain), "SERVER_KEY": str(key), **settings},
    )


def start_client(workdir: Path, server: Served, **settings: str) -> Served:
    _, _, trust = write_identity(workdir / "identity")
    return start(
        "client_svc",
        workdir,
        {"SERVER_URL": server.url, "SERVER_NAME": "server", "TRUST_STORE": str(trust), **settings},
    )


# -- talking to them ---------------------------------------------------------------------


class LiveResponse:
    """The parts of a Flask test response that the tests' helpers use, from a real answer."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers = dict(headers)
        self.body = body

    @property
    def mimetype(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def get_data(self, as_text: bool = False) -> Any:
        return self.body.decode() if as_text else self.body

    def get_json(self) -> Any:
        return jsonlib.loads(self.body)


class LiveHttp:
    """A stand-in for Flask's test client (``post``, ``get``) that talks to a real server,
    so :class:`attacks.peer.Peer` can run handshakes over the network."""

    def __init__(self, address: tuple[str, int], timeout: float = 30.0) -> None:
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
            return LiveResponse(answer.status, dict(answer.getheaders()), answer.read())
        finally:
            connection.close()

    def post(self, path: str, **kwargs: Any) -> LiveResponse:
        return self.open(path, "POST", **kwargs)

    def get(self, path: str, **kwargs: Any) -> LiveResponse:
        return self.open(path, "GET", **kwargs)


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
    with socket.create_connection(address, timeout=30) as sock:
        sock.settimeout(30)
        sender = threading.Thread(target=_send_all, args=(sock, request), daemon=True)
        sender.start()
        try:
            return _read_answer(sock)
        finally:
            sender.join(timeout=30)


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
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().title()] = value.strip()
    length = int(headers.get("Content-Length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer"
        body += chunk
    return LiveResponse(int(status_line.split()[1]), headers, body[:length])


# -- CPU time ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads, dead ones included) that process ``pid`` has used.

    Linux lets a process read another's CPU clock (clock_getcpuclockid); /proc/<pid>/stat
    (10 ms ticks) is the fallback.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # CPUCLOCK_SCHED of the whole process
    except OSError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
