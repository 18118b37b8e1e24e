"""Section "memory": resident memory of the server_svc worker per established connection.

server_svc runs under gunicorn with its gunicorn.conf.py and a short CONNECTION_TTL (and
SESSION_TTL, so that sessions expire with their connections). The benchmark fills it with full
ECDHE (x25519, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) handshakes made with kdf_lib's
ClientHandshake over http.client from a few threads, reads the worker's VmRSS at 0, 1,000 and
10,000 established connections, lets them expire (idle past the TTL; the next hello purges
them), and fills again: the second fill must not grow the process much.
Anchors: a budget of 8 KiB per connection, and the same server-side objects built in-process
(tracemalloc), which shows what the Python heap alone holds per connection.
"""

from __future__ import annotations

import gc
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from kdf_lib.handshake import ClientConfig, ClientHandshake, ServerHandshake
from kdf_lib.role import Role
from kdf_lib.trace import Trace
from server_svc import load_server_config
from server_svc.config import ServerSettings
from server_svc.store import MemoryServerStore

from .lab_client import client_config, handshake
from .report import Ceiling, Row
from .services import ROOT, Certificates, GunicornApp, HttpClient, certificates, gunicorn, rss_bytes
from .timing import QUICK, Budget

__all__ = ["TITLE", "run"]

TITLE = "Memory of server_svc per established connection"

SUITE = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"  # x25519, the client's first group
BYTES_PER_CONNECTION = 8 * 1024
#: The issue's budget, and "no growth on a second fill" (within 5 %).
PER_CONNECTION = Ceiling(1.0, "≤ 8 KiB per connection")
SECOND_FILL = Ceiling(1.05, "no growth on a second fill")


@dataclass(frozen=True)
class Sizes:
    """Connection counts and times for one run of the section."""

    small: int  # the "1,000" step
    large: int  # the "10,000" step
    ttl: float  # CONNECTION_TTL given to server_svc, seconds
    threads: int
    in_process: int  # connections built in-process for the tracemalloc anchor
    warmup: int  # handshakes before the baseline (imports, caches, the allocator's first arenas)

    @property
    def fill_seconds(self) -> float:
        """Most time one fill of ``large`` may take: it must end before its first connections
        expire, or the store would be purging while it fills. A fill cut short says so."""
        return 0.8 * self.ttl


#: Full ECDHE handshakes fill at roughly 150-250/s here, so 10,000 take about a minute:
#: the TTL leaves room for that, and the expiry wait is the TTL again.
FULL_SIZES = Sizes(small=1_000, large=10_000, ttl=90.0, threads=4, in_process=1_000, warmup=50)
QUICK_SIZES = Sizes(small=50, large=200, ttl=3.0, threads=4, in_process=50, warmup=10)


def _fill(port: int, config: ClientConfig, count: int, sizes: Sizes, deadline: float) -> int:
    """``count`` full handshakes from ``sizes.threads`` threads, stopping at ``deadline``."""
    lock = threading.Lock()
    remaining = count
    done = 0
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal remaining, done
        try:
            with HttpClient(port) as client:
                while time.monotonic() < deadline and not errors:
                    with lock:
                        if remaining <= 0:
                            return
                        remaining -= 1
                    handshake(client, config)
                    with lock:
                        done += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(sizes.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + 60)
    if errors:
        raise errors[0]
    return done


@dataclass(frozen=True)
class Reading:
    rss: int
    connections: int
    sessions: int


def _read(server: GunicornApp) -> Reading:
    health = server.health()  # /healthz counts, and purges nothing
    return Reading(rss_bytes(server.worker_pid()), health["connections"], health["sessions"])


def _in_process_bytes(certs: Certificates, count: int) -> float:
    """Python heap per established connection, server side, built in-process (tracemalloc).

    The same objects server_svc keeps, in its own store: the compacted ServerHandshake of each
    connection and its Session. tracemalloc sees Python allocations only, not OpenSSL's cipher
    contexts, so this is a floor.
    """
    server_config = load_server_config(str(certs.chain), str(certs.key))
    config = client_config(certs, SUITE)
    store = MemoryServerStore(
        ServerSettings(
            max_connections=count + 1,
            max_sessions=count + 1,
            connection_ttl=3600.0,
            session_ttl=3600.0,
        )
    )

    def one() -> None:
        client = ClientHandshake(config, trace=Trace(Role.CLIENT))
        server = ServerHandshake(server_config, trace=Trace(Role.SERVER))
        finish = client.receive_server_flight(server.receive_client_hello(client.client_hello()))
        client.receive_server_finished(
            server.receive_client_finish(finish.client_key_exchange, finish.finished_record)
        )
        server.compact()  # as server_svc does once a handshake is established
        store.mark_established(store.create(server).connection_id)
        assert server.session is not None
        store.remember_session(server.session)

    one()  # warm caches before the measurement
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            one()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / count


def _mib(value: float) -> str:
    return f"{value / (1 << 20):.1f} MiB"


def _kib(value: float) -> str:
    return f"{value / 1024:.1f} KiB"


def _state(reading: Reading) -> str:
    return f"{reading.connections:,} conn., {reading.sessions:,} sessions"


def run(budget: Budget, progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    sizes = QUICK_SIZES if budget == QUICK else FULL_SIZES
    with ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-memory-")))
        certs = stack.enter_context(certificates())
        env = {
            "SERVER_CERT_CHAIN": str(certs.chain),
            "SERVER_KEY": str(certs.key),
            "CONNECTION_TTL": str(sizes.ttl),
            # Sessions expire with their connections here. With the default (an hour) the
            # second fill finds the session store at its cap, where every insert scans the
            # whole store under its lock, and slows to a crawl (docs/performance.md, Memory).
            "SESSION_TTL": str(sizes.ttl),
        }
        progress(f"starting server_svc with CONNECTION_TTL=SESSION_TTL={sizes.ttl:g} s")
        server = stack.enter_context(
            gunicorn(
                "server_svc",
                "server_svc:create_app()",
                ROOT / "server_svc" / "gunicorn.conf.py",
                env,
                log_dir,
            )
        )
        config = client_config(certs, SUITE)
        _fill(server.port, config, sizes.warmup, sizes, time.monotonic() + sizes.fill_seconds)
        base = _read(server)
        progress(
            f"baseline after {sizes.warmup} warm-up handshakes: {_mib(base.rss)}, {_state(base)}"
        )

        started = time.monotonic()
        deadline = started + sizes.fill_seconds
        filled = _fill(server.port, config, sizes.small, sizes, deadline)
        small = _read(server)
        filled += _fill(server.port, config, sizes.large - sizes.small, sizes, deadline)
        large = _read(server)
        fill_seconds = time.monotonic() - started
        progress(
            f"first fill: {filled:,} handshakes in {fill_seconds:.1f} s; "
            f"{_mib(small.rss)} at {_state(small)}, {_mib(large.rss)} at {_state(large)}"
        )

        # Idle past the TTL. /healthz purges nothing, so the count stays until the next hello.
        time.sleep(sizes.ttl + 1.1)  # past the TTL, and a second since the last purge
        idle = _read(server)
        with HttpClient(server.port) as client:
            handshake(client, config)  # a new hello: the store purges what expired
        expired = _read(server)
        progress(
            f"after the TTL: /healthz still says {idle.connections:,}; after one more hello "
            f"{_state(expired)}, {_mib(expired.rss)}"
        )

        started = time.monotonic()
        refilled = _fill(server.port, config, sizes.large, sizes, started + sizes.fill_seconds)
        second = _read(server)
        progress(
            f"second fill: {refilled:,} handshakes in {time.monotonic() - started:.1f} s "
            f"(first: {filled:,} in {fill_seconds:.1f} s); "
            f"{_mib(second.rss)} at {_state(second)}"
        )

        progress(f"in-process anchor: {sizes.in_process:,} connections under tracemalloc")
        heap = _in_process_bytes(certs, sizes.in_process)

    baseline = f"RSS at {base.connections:,} connections (after {sizes.warmup} warm-up handshakes)"
    per_small = (small.rss - base.rss) / max(1, small.connections - base.connections)
    per_large = (large.rss - base.rss) / max(1, large.connections - base.connections)
    how = f"{large.connections - base.connections:,} ECDHE x25519"
    return [
        Row(
            f"server_svc worker RSS, {sizes.small:,} established connections",
            f"{_mib(small.rss)} ({_state(small)})",
            baseline,
            _mib(base.rss),
            small.rss / base.rss,
        ),
        Row(
            f"server_svc worker RSS, {sizes.large:,} established connections",
            f"{_mib(large.rss)} ({_state(large)})",
            baseline,
            _mib(base.rss),
            large.rss / base.rss,
        ),
        Row(
            f"RSS per established connection, first {sizes.small:,}",
            f"{_kib(per_small)}/connection",
            "budget",
            _kib(BYTES_PER_CONNECTION),
            per_small / BYTES_PER_CONNECTION,
        ),
        Row(
            f"RSS per established connection and its session, (RSS({sizes.large:,}) - RSS(0)) / {how}",
            f"{_kib(per_large)}/connection",
            "budget",
            _kib(BYTES_PER_CONNECTION),
            per_large / BYTES_PER_CONNECTION,
            None,
            PER_CONNECTION,
        ),
        Row(
            f"RSS per established connection, {sizes.large:,}: against the Python heap",
            f"{_kib(per_large)}/connection",
            f"same server objects in-process, tracemalloc ({sizes.in_process:,})",
            f"{_kib(heap)}/connection",
            per_large / heap if heap > 0 else None,
        ),
        Row(
            f"server_svc worker RSS after the {sizes.large:,} expired (TTL {sizes.ttl:g} s)",
            f"{_mib(expired.rss)} ({_state(expired)})",
            f"RSS at {sizes.large:,} connections",
            _mib(large.rss),
            expired.rss / large.rss,
        ),
        Row(
            f"server_svc worker RSS after a second fill of {sizes.large:,}",
            f"{_mib(second.rss)} ({_state(second)})",
            "RSS after the first fill",
            _mib(large.rss),
            second.rss / large.rss,
            None,
            SECOND_FILL,
        ),
    ]
