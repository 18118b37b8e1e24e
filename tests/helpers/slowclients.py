"""Slow and silent HTTP clients against a service, with a prober that measures everyone else.

The attack of docs/security.md "slow clients": many connections that each hold a request open
without finishing it, in three kinds, while another client keeps asking ``GET /healthz``:

- ``head``: an incomplete request head, one more header byte every ``trickle_s`` seconds;
- ``body``: a complete head announcing a body, then the body one byte every ``trickle_s``;
- ``silent``: a connection that sends nothing at all.

Everything is bounded: the attack runs for ``duration_s`` and then closes whatever is still
open. Only 127.0.0.1 (or the project's own containers) is ever addressed. Used by the compose
tests (tests/e2e/test_slow_clients.py) and by hand, to compare mechanisms:

    python tests/helpers/slowclients.py 127.0.0.1 8002 --connections 256 --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import selectors
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

from lab_common.contract import HANDSHAKE, HEALTH

KINDS = ("head", "body", "silent")


@dataclass
class SlowConnection:
    kind: str
    sock: socket.socket
    opened: float
    sent: int = 0
    #: Seconds after opening at which the service closed it (None: still open at the end).
    cut_after: float | None = None
    #: What the service wrote before closing (its answer, if any).
    answer: bytes = b""


@dataclass
class Report:
    connections: int
    opened: int
    probes: list[float] = field(default_factory=list)
    probe_failures: list[str] = field(default_factory=list)
    slow: list[SlowConnection] = field(default_factory=list)

    def p99(self) -> float:
        if not self.probes:
            return float("inf")
        ordered = sorted(self.probes)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def cut(self, kind: str) -> list[SlowConnection]:
        return [c for c in self.slow if c.kind == kind and c.cut_after is not None]

    def summary(self) -> dict[str, object]:
        by_kind: dict[str, object] = {}
        for kind in KINDS:
            conns = [c for c in self.slow if c.kind == kind]
            cut = [c.cut_after for c in conns if c.cut_after is not None]
            statuses = sorted({_status(c.answer) for c in conns if c.cut_after is not None})
            by_kind[kind] = {
                "opened": len(conns),
                "cut": len(cut),
                "cut_after_s": [round(min(cut), 1), round(max(cut), 1)] if cut else None,
                "answers": statuses,
            }
        return {
            "connections": self.connections,
            "opened": self.opened,
            "probes": len(self.probes),
            "probe_failures": len(self.probe_failures),
            "probe_p50_ms": round(statistics.median(self.probes) * 1000, 1)
            if self.probes
            else None,
            "probe_p99_ms": round(self.p99() * 1000, 1) if self.probes else None,
            "probe_max_ms": round(max(self.probes) * 1000, 1) if self.probes else None,
            "slow": by_kind,
        }


def _status(answer: bytes) -> str:
    line = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = line.split(" ", 2)
    if not answer:
        return "closed"
    return parts[1] if len(parts) >= 2 and parts[0].startswith("HTTP/") else "not HTTP"


def _open(host: str, port: int, kind: str, host_header: str) -> SlowConnection:
    sock = socket.create_connection((host, port), timeout=5)
    sock.setblocking(False)
    conn = SlowConnection(kind, sock, time.monotonic())
    if kind == "head":
        _send(conn, f"POST {HANDSHAKE} HTTP/1.1\r\nHost: {host_header}\r\nX-Slow: ".encode())
    elif kind == "body":
        _send(
            conn,
            (
                f"POST {HANDSHAKE} HTTP/1.1\r\nHost: {host_header}\r\n"
                "Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{"
            ).encode(),
        )
    return conn


def _send(conn: SlowConnection, data: bytes) -> None:
    try:
        conn.sent += conn.sock.send(data)
    except BlockingIOError:
        pass
    except OSError:
        _mark_cut(conn)


def _mark_cut(conn: SlowConnection) -> None:
    if conn.cut_after is None:
        conn.cut_after = time.monotonic() - conn.opened


def _probe(host: str, port: int, host_header: str, stop: threading.Event, report: Report) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            connection = http.client.HTTPConnection(host, port, timeout=10)
            connection.request("GET", HEALTH, headers={"Host": host_header})
            response = connection.getresponse()
            body = response.read()
            connection.close()
            if response.status != 200 or json.loads(body).get("status") != "ok":
                report.probe_failures.append(f"status {response.status}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            report.probe_failures.append(type(exc).__name__)
        report.probes.append(time.monotonic() - started)
        stop.wait(0.05)


def attack(
    host: str,
    port: int,
    *,
    connections: int = 256,
    duration_s: float = 20.0,
    trickle_s: float = 2.0,
    kinds: tuple[str, ...] = KINDS,
    host_header: str = "localhost",
) -> Report:
    """Hold ``connections`` slow connections (the kinds in turn) for ``duration_s`` while probing."""
    report = Report(connections, 0)
    for i in range(connections):
        try:
            report.slow.append(_open(host, port, kinds[i % len(kinds)], host_header))
        except OSError:
            continue
    report.opened = len(report.slow)
    selector = selectors.DefaultSelector()
    for conn in report.slow:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    stop = threading.Event()
    prober = threading.Thread(target=_probe, args=(host, port, host_header, stop, report))
    prober.start()
    deadline = time.monotonic() + duration_s
    next_trickle = time.monotonic() + trickle_s
    try:
        while (now := time.monotonic()) < deadline:
            for key, _ in selector.select(timeout=min(0.2, max(0.0, deadline - now))):
                conn = key.data
                try:
                    data = conn.sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    conn.answer += data
                    continue
                _mark_cut(conn)
                selector.unregister(conn.sock)
            if time.monotonic() >= next_trickle:
                next_trickle += trickle_s
                for conn in report.slow:
                    if conn.cut_after is None and conn.kind in ("head", "body"):
                        _send(conn, b"a")
    finally:
        stop.set()
        prober.join(timeout=15)
        selector.close()
        for conn in report.slow:
            conn.sock.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--trickle", type=float, default=2.0)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("only the loopback is attacked")
    report = attack(
        args.host,
        args.port,
        connections=min(args.connections, 2000),
        duration_s=min(args.seconds, 300),
        trickle_s=args.trickle,
        kinds=tuple(args.kinds.split(",")),
    )
    print(json.dumps(report.summary(), indent=2))


if __name__ == "__main__":
    main()
