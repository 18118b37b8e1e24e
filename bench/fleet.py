"""Section "fleet" (opt-in: it needs Docker): throughput of the scaled stack (docs/scaling.md).

The fleet as users start it (``scripts/scale-up SERVERS 1``: HAProxy in front, state in Redis
with ``appendfsync always``), first with one server_svc replica, then resized to three. Each
time, WORKERS keep-alive clients drive client_svc's tier on 127.0.0.1 for a fixed time: full
ECDHE handshakes, then 1 KiB messages on a connection each. Reported: handshakes/s and
messages/s with three replicas against one, and the median latency.

On a machine with two cores, three replicas share the same two cores as one does (and the load
generator, HAProxy, Redis and client_svc run there too), so the ratio shows what replicas cost
rather than what they add; docs/scaling.md says what a larger machine gives. Bounded: each load
runs for a fixed time and count; the fleet is taken down at the end whatever happened.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from lab_common.contract import HANDSHAKE, MESSAGE

from .report import Row
from .services import HttpClient, free_port
from .timing import QUICK, Budget

__all__ = ["TITLE", "run"]

TITLE = "The fleet: three server_svc replicas against one (Docker)"

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "tls12-lab-bench"
WORKERS = 6
MESSAGE_BYTES = 1024
#: At most this many requests per load, whatever the time.
MAX_REQUESTS = 20_000


@dataclass
class Load:
    done: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


@contextmanager
def _fleet(progress: Callable[[str], None]) -> Iterator[dict[str, str]]:
    ports = {
        name: str(free_port())
        for name in ("LAB_CLIENT_PORT", "LAB_SERVER_PORT", "LAB_MITM_CLIENT_PORT", "LAB_PROXY_STATS_PORT")
    }  # fmt: skip
    environment = {**os.environ, **ports, "LAB_COMPOSE_PROJECT": PROJECT}
    _script(environment, "scripts/scale-down", "--volumes")  # what an interrupted run left
    try:
        yield environment
    finally:
        progress("taking the fleet down")
        _script(environment, "scripts/scale-down", "--volumes")


def _script(environment: dict[str, str], *command: str) -> None:
    done = subprocess.run(  # noqa: S603 - the project's own scripts
        list(command), cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip
    if done.returncode != 0 and command[0] != "scripts/scale-down":
        raise RuntimeError(
            f"{' '.join(command)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def _drive(port: int, seconds: float, kind: str) -> Load:
    """WORKERS clients for ``seconds``: handshakes, or messages on a connection each."""
    load, lock = Load(), threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        http = HttpClient(port)
        try:
            body = b'{"key_exchange": "ecdhe"}'
            path = HANDSHAKE
            if kind == "message":
                status, data = http.request("POST", HANDSHAKE, body)
                if status != 200:
                    raise RuntimeError(f"handshake failed: {status} {data[:200]!r}")
                connection_id = orjson.loads(data)["connection_id"]
                body = orjson.dumps(
                    {"plaintext": "x" * MESSAGE_BYTES, "connection_id": connection_id}
                )
                path = MESSAGE
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status, _ = http.request("POST", path, body)
                took = time.perf_counter() - started
                with lock:
                    if status == 200:
                        load.done += 1
                        load.latencies.append(took)
                    else:
                        load.failures += 1
                    if load.done + load.failures >= MAX_REQUESTS:
                        return
        finally:
            http.close()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = time.monotonic() - started
    return load


def run(budget: Budget, progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    quick = budget == QUICK
    rounds, seconds = (1, 3.0) if quick else (3, 10.0)
    results: dict[tuple[int, str], list[Load]] = {}
    with _fleet(progress) as environment:
        port = int(environment["LAB_CLIENT_PORT"])
        for servers in (1, 3):
            progress(f"scaling to {servers} server_svc replica(s) and 1 client_svc replica")
            _script(environment, "scripts/scale-up", str(servers), "1")
            _drive(port, 1.0, "handshake")  # warm: every replica has served
            for number in range(rounds):
                for kind in ("handshake", "message"):
                    progress(f"{servers} replica(s), round {number + 1} of {rounds}: {kind}s")
                    results.setdefault((servers, kind), []).append(_drive(port, seconds, kind))
    rows = []
    for kind, label in (("handshake", "full ECDHE handshakes/s"), ("message", "1 KiB messages/s")):
        one, three = results[(1, kind)], results[(3, kind)]
        ratios = [b.rate / a.rate for a, b in zip(one, three, strict=True) if a.rate]
        spread = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        rows.append(
            Row(
                f"{label} through HAProxy ({WORKERS} clients), 3 server_svc replicas",
                _describe(three),
                "the same, 1 server_svc replica",
                _describe(one),
                statistics.median(ratios),
                (spread[0], spread[2]),
                None,
            )
        )
    return rows


def _describe(loads: list[Load]) -> str:
    done = sum(load.done for load in loads)
    seconds = sum(load.seconds for load in loads)
    latencies = [latency for load in loads for latency in load.latencies]
    failures = sum(load.failures for load in loads)
    median = statistics.median(latencies) * 1000 if latencies else float("nan")
    text = f"{done / seconds:.0f}/s (p50 {median:.1f} ms)"
    return text + (f", {failures} failed" if failures else "")
