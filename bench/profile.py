"""``python -m bench.profile``: where a handshake's CPU goes, the mandated stack against the lab.

    python -m bench.profile                          # RSA full handshakes (2,000)
    python -m bench.profile --case ecdhe-resumed     # rsa|ecdhe - full|resumed
    python -m bench.profile --message                # server_svc's /message, 1 KiB (5,000)
    python -m bench.profile --redis                  # the services on the Redis store
    python -m bench.profile --handshakes 300 --quick # the CI smoke run

The services run as ``python -m bench`` runs them (gunicorn, their gunicorn.conf.py, 127.0.0.1,
throwaway certificates); one keep-alive client drives them, one request at a time, for a
bounded count. Each worker's CPU time comes from /proc, split into user and kernel time, and
py-spy (``py-spy record --gil --nonblocking``: only the thread holding the GIL, without stopping
the process) samples where the user time goes. Every sample is put in one bucket, by the
innermost frame that belongs to a known part of the stack:

* the **mandated stack**, what any Python service answering HTTP JSON with gunicorn and Flask
  pays: gunicorn (its event loop, thread pool, HTTP parsing and writing), Flask and Werkzeug,
  the HTTP client client_svc calls server_svc with (http.client, its email header parser,
  sockets), JSON encoding and decoding, and the interpreter's threads; plus the kernel time
  (sockets, polling, thread wake-ups);
* **the protocol**: kdf_lib's handshake machines, key exchange, PRF, records and their
  `cryptography` calls, what a TLS stack computes (OpenSSL's share of the work);
* **the lab's own**: the step trace and its fingerprints (kdf_lib/trace.py), the services'
  code (client_svc, server_svc, lab_common: stores, validation, metrics, logs), and the
  logging, prometheus_client and (with ``--redis``) redis-py libraries they call.

With ``--redis`` the services keep their state in a redis-server of their own on 127.0.0.1
(``STATE_BACKEND=redis``, as ``python -m bench --sections scale`` starts it); the Redis
server's own CPU is not in the table, and its header gives the round trips each operation took.

The user time of each worker is shared out by its buckets' sample counts. py-spy must be
installed (``pip install py-spy``, requirements/test.txt) and allowed to read the workers'
memory (root, or ptrace permission). Everything started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from kdf_lib.handshake import ClientConfig
from lab_common.contract import HANDSHAKE

from . import lab_client
from .compare import _cases
from .handshake import lab_stack
from .services import ROOT, Certificates, HttpClient, _stat_fields, certificates, gunicorn

#: py-spy's samples per second. Its --gil mode reads each worker's memory without stopping it.
RATE = 400

#: (bucket, part of the stack, frame file patterns): a sample's innermost frame that matches one
#: of the patterns decides its bucket, checked from the innermost frame outwards.
BUCKETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("JSON encoding and decoding", "mandated", ("/json/", "/orjson/")),
    ("logging (the lab's log lines)", "lab", ("/logging/",)),
    ("metrics (prometheus_client)", "lab", ("/prometheus_client/",)),
    ("the Redis store's client (redis-py, hiredis)", "lab", ("/redis/",)),
    (
        "HTTP client (http.client, email headers, sockets)",
        "mandated",
        ("/http/client.py", "/email/", "/socket.py"),
    ),
    ("step trace and fingerprints (kdf_lib/trace.py)", "lab", ("/kdf_lib/trace.py",)),
    ("the protocol (kdf_lib, cryptography)", "protocol", ("/kdf_lib/", "/cryptography/")),
    (
        "the services (client_svc, server_svc, lab_common)",
        "lab",
        ("/client_svc/", "/server_svc/", "/lab_common/"),
    ),
    ("Flask and Werkzeug", "mandated", ("/flask/", "/werkzeug/")),
    (
        "gunicorn (event loop, thread pool, HTTP parsing)",
        "mandated",
        ("/gunicorn/", "/concurrent/futures/", "/selectors.py", "/threading.py"),
    ),
)
OTHER = ("other Python (interpreter, imports)", "mandated")
KERNEL = ("kernel time (sockets, polling, thread wake-ups)", "mandated")
PARTS = {"mandated": "mandated stack", "protocol": "the protocol", "lab": "the lab's own"}

_FRAME = re.compile(r"\((.*?):\d+\)$")


def classify(stack: str) -> tuple[str, str]:
    """The bucket of one py-spy raw stack ("thread;frame (file:line);...")."""
    # py-spy shortens paths ("json/decoder.py", "/work/lab/kdf_lib/prf.py"): a leading "/"
    # makes every pattern match at a directory boundary.
    files = ["/" + m.group(1) for frame in stack.split(";") if (m := _FRAME.search(frame))]
    for path in reversed(files):
        for name, part, patterns in BUCKETS:
            if any(pattern in path for pattern in patterns):
                return name, part
    return OTHER


def read_samples(raw: Path) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    if not raw.exists():
        return counts
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            counts[classify(stack)] += int(number)
    return counts


def user_and_kernel_seconds(pid: int) -> tuple[float, float]:
    fields = _stat_fields(pid)
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


@dataclass
class Worker:
    name: str
    pid: int
    user: float = 0.0
    kernel: float = 0.0
    samples: Counter[tuple[str, str]] | None = None


@contextmanager
def sampling(workers: list[Worker], scratch: Path, py_spy: str) -> Iterator[None]:
    """py-spy on each worker for the block; CPU times read around it."""
    spies = []
    raws = {w.name: scratch / f"{w.name}.txt" for w in workers}
    starts = {w.name: user_and_kernel_seconds(w.pid) for w in workers}
    try:
        for worker in workers:
            command = [py_spy, "record", "--pid", str(worker.pid), "--rate", str(RATE)]
            command += ["--format", "raw", "--output", str(raws[worker.name]), "--gil"]
            command += ["--nonblocking", "--duration", "600"]
            spies.append(
                subprocess.Popen(  # noqa: S603 - py-spy, fixed arguments
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
            )
        time.sleep(1.0)  # py-spy attaches
        for spy in spies:
            if spy.poll() is not None:
                error = spy.stderr.read().decode(errors="replace") if spy.stderr else ""
                raise SystemExit(f"bench.profile: py-spy could not attach: {error[-400:]}")
        starts = {w.name: user_and_kernel_seconds(w.pid) for w in workers}
        yield
        for worker in workers:
            user, kernel = user_and_kernel_seconds(worker.pid)
            worker.user = user - starts[worker.name][0]
            worker.kernel = kernel - starts[worker.name][1]
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        for spy in spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=10)
    for worker in workers:
        worker.samples = read_samples(raws[worker.name])


def _trips(redis: bool, ports: tuple[int, ...]) -> int:
    """The Redis round trips of the services on ``ports`` so far (0 on the memory store); read
    outside the sampled window (a metrics scrape is a request)."""
    from .scale import round_trips

    return round_trips(*ports) if redis else 0


def _handshakes(port: int, body: bytes, count: int, deadline: float) -> int:
    done = 0
    with HttpClient(port) as client:
        while done < count and time.monotonic() < deadline:
            status, data = client.request("POST", HANDSHAKE, body)
            if status != 200:
                raise RuntimeError(f"client_svc answered {status}: {data[:300]!r}")
            done += 1
    return done


def _messages(port: int, config: ClientConfig, count: int, deadline: float) -> int:
    from .message import _lab_message

    payload = os.urandom(1024)
    done = 0
    with HttpClient(port) as client:
        lab = lab_client.handshake(client, config)
        while done < count and time.monotonic() < deadline:
            _lab_message(client, lab, payload)
            done += 1
    return done


def table(workers: list[Worker], operations: int, unit: str) -> list[str]:
    """Milliseconds of CPU per operation, by bucket and part, both workers added up."""
    per_bucket: dict[tuple[str, str], float] = {}
    total = 0.0
    for worker in workers:
        samples = worker.samples or Counter()
        counted = sum(samples.values())
        for bucket, count in samples.items():
            per_bucket[bucket] = per_bucket.get(bucket, 0.0) + worker.user * count / counted
        if not counted:
            per_bucket[OTHER] = per_bucket.get(OTHER, 0.0) + worker.user
        per_bucket[KERNEL] = per_bucket.get(KERNEL, 0.0) + worker.kernel
        total += worker.user + worker.kernel
    lines = [
        f"| where (both services' workers) | part | CPU ms per {unit} | share |",
        "|---|---|---|---|",
    ]
    for (name, part), seconds in sorted(per_bucket.items(), key=lambda item: -item[1]):
        ms = seconds * 1000 / operations
        lines.append(f"| {name} | {PARTS[part]} | {ms:.3f} | {seconds / total:.0%} |")
    by_part: dict[str, float] = dict.fromkeys(PARTS, 0.0)
    for (_, part), seconds in per_bucket.items():
        by_part[part] += seconds
    for part in ("mandated", "protocol", "lab"):
        ms = by_part[part] * 1000 / operations
        lines.append(f"| **{PARTS[part]}** | | **{ms:.3f}** | **{by_part[part] / total:.0%}** |")
    lines.append(f"| **total** | | **{total * 1000 / operations:.3f}** | 100% |")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description="Where the services' CPU goes: the mandated stack, the protocol, the lab.",
    )
    parser.add_argument("--case", default="rsa-full", help="rsa|ecdhe - full|resumed")
    parser.add_argument("--message", action="store_true", help="server_svc's /message, 1 KiB")
    parser.add_argument("--redis", action="store_true", help="the services on the Redis store")
    parser.add_argument("--handshakes", type=int, default=0, help="operations (1-20000)")
    parser.add_argument("--quick", action="store_true", help="few operations: a smoke run")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop after this long")
    return parser


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the with-blocks, which stop every process


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    count = args.handshakes or (200 if args.quick else 5000 if args.message else 2000)
    if not 1 <= count <= 20000:
        raise SystemExit("bench.profile: --handshakes must be 1-20000")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("bench.profile: py-spy is not installed (pip install py-spy)")
    ((case, resumed),) = _cases(args.case)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def progress(message: str) -> None:
        print(f"bench.profile: {message}", file=sys.stderr, flush=True)

    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-profile-")))
        certs: Certificates = stack.enter_context(certificates())
        deadline = time.monotonic() + args.max_seconds
        env: dict[str, str] = {}
        if args.redis:
            from .scale import redis_env, redis_server

            _process, store = stack.enter_context(redis_server(scratch))
            env = redis_env(store, scratch)
        if args.message:
            conf = ROOT / "server_svc" / "gunicorn.conf.py"
            identity = {"SERVER_CERT_CHAIN": str(certs.chain), "SERVER_KEY": str(certs.key), **env}
            server = stack.enter_context(
                gunicorn("server_svc", "server_svc:create_app()", conf, identity, scratch)
            )
            workers = [Worker("server_svc", server.worker_pid())]
            config = lab_client.client_config(certs, case.suite)
            what, unit = f"/message 1 KiB ({case.suite})", "message"
            _messages(server.port, config, min(count, 300), deadline)  # warm up
            progress(f"{count} messages under py-spy")
            ports: tuple[int, ...] = (server.port,)
            trips = _trips(args.redis, ports)
            with sampling(workers, scratch, py_spy):
                done = _messages(server.port, config, count, deadline)
            trips = _trips(args.redis, ports) - trips
        else:
            lab = stack.enter_context(lab_stack(certs, scratch, env))
            workers = [Worker(n, pid) for n, pid in lab.watch().items()]
            with HttpClient(lab.client.port) as client:
                from .handshake import handshake_body

                body = handshake_body(client, case, resumed)
            what = f"{case.label} {'resumed' if resumed else 'full'} handshake"
            unit = "handshake"
            _handshakes(lab.client.port, body, min(count, 300), deadline)  # warm up
            progress(f"{count} handshakes under py-spy")
            trips = _trips(args.redis, lab.ports())
            with sampling(workers, scratch, py_spy):
                done = _handshakes(lab.client.port, body, count, deadline)
            trips = _trips(args.redis, lab.ports()) - trips
    if not done:
        raise SystemExit("bench.profile: nothing ran before --max-seconds")
    samples = sum(sum((w.samples or Counter()).values()) for w in workers)
    print(
        f"`python -m bench.profile{' --message' if args.message else ''}"
        f"{' --redis' if args.redis else ''} --case {args.case}`: "
        f"{what}, {done} one at a time, {samples} py-spy samples at {RATE}/s"
        + (f", {trips / done:.1f} Redis round trips each" if args.redis else "")
    )
    print()
    print("\n".join(table(workers, done, unit)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
