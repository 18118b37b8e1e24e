"""Section "scale": what the shared state store costs (docs/scaling.md).

The same pair of services twice under gunicorn, one on the memory store and one on Redis
(``STATE_BACKEND=redis``, Debian's redis-server on 127.0.0.1 with the scaled stack's settings:
append-only file, fsync on every write), driven alternately in rounds: full handshakes through
client_svc, then messages on one connection. For each, CPU seconds of both service workers (and
of Redis, for the Redis pair) per operation, and the Redis commands each one took (the round trips
both services counted: a Lua script is one). Target: with Redis, both services' CPU per handshake at most 1.3x the
memory store's. Replicas are not what this measures: on a two-core machine three replicas share
the same two cores (docs/scaling.md says what a larger machine would give).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

import redis
from lab_common.contract import HANDSHAKE, MESSAGE, METRICS
from lab_common.sealing import write_key_file

from .handshake import LabStack, lab_stack
from .report import Ceiling, Row
from .services import HttpClient, certificates, cpu_seconds, free_port
from .timing import QUICK, Budget

__all__ = ["TITLE", "redis_env", "redis_server", "round_trips", "run"]

TITLE = "The Redis state store against the memory store"

HANDSHAKE_CEILING = Ceiling(1.3, "services' CPU per handshake, Redis vs memory")
MESSAGE_BYTES = 1024


@dataclass
class Totals:
    operations: int = 0
    service_cpu: float = 0.0
    redis_cpu: float = 0.0
    round_trips: int = 0
    per_round: list[float] = field(default_factory=list)  # service CPU per operation


@contextmanager
def redis_server(directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], redis.Redis]]:
    binary = shutil.which("redis-server")
    if binary is None:
        # Said plainly, not as a traceback: the Redis store's benchmarks (this section,
        # bench.compare --redis, bench.profile --redis) each start a redis-server of their own.
        raise SystemExit(
            "bench: the Redis store's benchmarks start a redis-server of their own, and none is "
            "installed (apt-get install redis-server)"
        )
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - a fixed program and arguments
        [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--logfile", str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.RedisError:
                time.sleep(0.05)
        yield process, client
    finally:
        process.terminate()
        process.wait(timeout=10)


def redis_env(store: redis.Redis, directory: Path, db: int = 0) -> dict[str, str]:
    """The services' settings for the Redis store ``store`` (database ``db``), sealing with a
    key-encryption key in ``directory``/state.key (made on first use)."""
    key_file = directory / "state.key"
    write_key_file(key_file)
    port = store.connection_pool.connection_kwargs["port"]
    return {
        "STATE_BACKEND": "redis",
        "REDIS_URL": f"redis://127.0.0.1:{port}/{db}",
        "STATE_KEY_FILE": str(key_file),
    }


def round_trips(*ports: int) -> int:
    """Commands the services on ``ports`` have sent to Redis so far (their
    tls_lab_state_round_trips)."""
    total = 0
    for port in ports:
        http = HttpClient(port)
        try:
            _, text = http.request("GET", METRICS)
        finally:
            http.close()
        for line in text.decode().splitlines():
            if line.startswith("tls_lab_state_round_trips "):
                total += int(float(line.split()[1]))
    return total


def _measure(
    stack: LabStack,
    redis_pid: int | None,
    totals: Totals,
    work: Callable[[HttpClient], int],
) -> None:
    pids = list(stack.watch().values())
    http = HttpClient(stack.client.port)
    try:
        before = sum(cpu_seconds(pid) for pid in pids)
        redis_before = cpu_seconds(redis_pid) if redis_pid else 0.0
        trips_before = round_trips(*stack.ports()) if redis_pid is not None else 0
        done = work(http)
        used = sum(cpu_seconds(pid) for pid in pids) - before
        totals.operations += done
        totals.service_cpu += used
        totals.per_round.append(used / done)
        if redis_pid is not None:
            totals.redis_cpu += cpu_seconds(redis_pid) - redis_before
            totals.round_trips += round_trips(*stack.ports()) - trips_before
    finally:
        http.close()


def _handshakes(count: int) -> Callable[[HttpClient], int]:
    def work(http: HttpClient) -> int:
        for _ in range(count):
            status, data = http.request("POST", HANDSHAKE, b'{"key_exchange": "ecdhe"}')
            if status != 200:
                raise RuntimeError(f"handshake failed: {status} {data[:200]!r}")
        return count

    return work


def _messages(count: int) -> Callable[[HttpClient], int]:
    def work(http: HttpClient) -> int:
        status, data = http.request("POST", HANDSHAKE, b'{"key_exchange": "ecdhe"}')
        connection_id = orjson.loads(data)["connection_id"]
        body = orjson.dumps({"plaintext": "x" * MESSAGE_BYTES, "connection_id": connection_id})
        for _ in range(count):
            status, data = http.request("POST", MESSAGE, body)
            if status != 200:
                raise RuntimeError(f"message failed: {status} {data[:200]!r}")
        return count

    return work


def run(budget: Budget, progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    quick = budget == QUICK
    rounds, count = (2, 10) if quick else (6, 100)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
        certs = stack.enter_context(certificates())
        process, store = stack.enter_context(redis_server(tmp))
        progress("starting a memory-store pair and a Redis-store pair of services")
        memory = stack.enter_context(lab_stack(certs, tmp, label="memory-"))
        shared = stack.enter_context(lab_stack(certs, tmp, redis_env(store, tmp), label="redis-"))
        results = {
            (kind, backend): Totals()
            for kind in ("handshake", "message")
            for backend in ("memory", "redis")
        }
        for number in range(rounds):
            progress(f"round {number + 1} of {rounds}: {count} handshakes and messages each")
            for kind, work in (("handshake", _handshakes(count)), ("message", _messages(count))):
                _measure(memory, None, results[(kind, "memory")], work)
                _measure(shared, process.pid, results[(kind, "redis")], work)
    rows = []
    for kind, label in (("handshake", "full ECDHE handshake"), ("message", "1 KiB message")):
        mem, red = results[(kind, "memory")], results[(kind, "redis")]
        per_memory = mem.service_cpu / mem.operations
        per_redis = red.service_cpu / red.operations
        ratios = [r / m for r, m in zip(red.per_round, mem.per_round, strict=True)]
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        rows.append(
            Row(
                f"CPU per {label}, both services, Redis store",
                f"{per_redis * 1000:.2f} ms (+ Redis {red.redis_cpu / red.operations * 1000:.2f} ms, "
                f"{red.round_trips / red.operations:.1f} Redis round trips)",
                "the same, memory store",
                f"{per_memory * 1000:.2f} ms",
                statistics.median(ratios),
                (quartiles[0], quartiles[2]),
                HANDSHAKE_CEILING if kind == "handshake" else None,
            )
        )
    return rows
