"""``python -m bench.compare``: two versions of the services, handshake for handshake.

    python -m bench.compare HEAD~3              # that revision against this working tree
    python -m bench.compare v1 v2 --rounds 12   # two revisions
    python -m bench.compare HEAD HEAD           # the same code twice: how far noise alone goes
    python -m bench.compare HEAD~1 --redis      # both on the Redis store (STATE_BACKEND=redis)

A change to the handshake path is worth a few percent at most (docs/performance.md), and the
machine drifts by more than that within minutes, so "before" and "after" runs on their own
prove nothing. This runs both versions at once: each as its own server_svc and client_svc under
gunicorn (their own gunicorn.conf.py, throwaway certificates, free 127.0.0.1 ports), and then,
case by case, alternates rounds of N handshakes through ``POST /handshake`` on one and on the
other (order swapped every round). It reports the CPU time both services' workers spent per
handshake (read from /proc) and the rate, and the median of the per-round ratios with their
interquartile range. CPU time holds still when other work shares the machine; the rate does not.

With ``--redis`` both versions keep their state in one redis-server started for the run
(Debian's, with the scaled stack's settings: append-only file, fsync on every write), each in a
database of its own, and the table also gives the Redis round trips each version took per
handshake (their ``tls_lab_state_round_trips``; the metrics scrape that reads them may add a
key count's SCAN). The Redis server's own CPU is not in the services' figures.

A revision is exported with ``git archive`` into a temporary directory; the working tree is
used as it is. Everything started here is stopped by its PID when the run ends, on errors and
Ctrl-C too; every loop is bounded by the round and handshake counts and by ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab_common.contract import HANDSHAKE

from .handshake import CASES, Case, LabStack, handshake_body, lab_stack
from .scale import redis_env, redis_server, round_trips
from .services import ROOT, HttpClient, certificates, cpu_seconds

WORKING_TREE = "WORKTREE"


@dataclass(frozen=True)
class Side:
    label: str  # "base" or "head"
    revision: str  # a git revision, or WORKING_TREE
    root: Path


@dataclass
class Samples:
    """Per round: CPU milliseconds per handshake of server_svc and client_svc, and the rate."""

    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    #: With --redis: the Redis round trips of both services per handshake.
    trips: list[float] = field(default_factory=list)

    def cpu_ms(self) -> list[float]:
        return [s + c for s, c in zip(self.server_ms, self.client_ms, strict=True)]


@contextmanager
def source_tree(revision: str, scratch: Path) -> Iterator[Path]:
    """The repository at ``revision`` (``git archive``), or this working tree."""
    if revision == WORKING_TREE:
        yield ROOT
        return
    target = scratch / f"tree-{len(list(scratch.iterdir()))}"
    target.mkdir()
    archive = subprocess.run(  # noqa: S603 - fixed git arguments, the revision is one argument
        ["git", "archive", "--format=tar", revision],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=False,
        timeout=120,
    )
    if archive.returncode != 0:
        raise SystemExit(f"bench.compare: git archive {revision}: {archive.stderr.decode()[-500:]}")
    tar_path = scratch / "tree.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(target, filter="data")
    tar_path.unlink()
    yield target


def _round(
    stack: LabStack, body: bytes, count: int, *, redis: bool = False
) -> tuple[float, float, float, float]:
    """``count`` handshakes; (server CPU ms, client CPU ms) per handshake, handshakes/s, and
    (``redis``) the Redis round trips per handshake, read outside the CPU's window.

    Each round has its own keep-alive connection: while the other version runs its round,
    gunicorn may close an idle one (its keepalive is 5 s)."""
    trips_before = round_trips(*stack.ports()) if redis else 0
    pids = (stack.server.worker_pid(), stack.client.worker_pid())
    with HttpClient(stack.client.port) as client:
        client.request("GET", "/healthz")  # connected before the clock starts
        before = [cpu_seconds(pid) for pid in pids]
        started = time.perf_counter()
        for _ in range(count):
            status, data = client.request("POST", HANDSHAKE, body)
            if status != 200:
                raise RuntimeError(f"client_svc answered {status}: {data[:300]!r}")
        elapsed = time.perf_counter() - started
        after = [cpu_seconds(pid) for pid in pids]
    trips = (round_trips(*stack.ports()) - trips_before) / count if redis else 0.0
    return (
        (after[0] - before[0]) * 1000 / count,
        (after[1] - before[1]) * 1000 / count,
        count / elapsed,
        trips,
    )


def _median_iqr(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 4:
        median = statistics.median(values)
        return median, min(values), max(values)
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return median, q1, q3


def _ratio_cell(base: list[float], head: list[float], *, higher_is_better: bool) -> str:
    """Median of per-round ratios, as "head is N x faster" (> 1 means head is better)."""
    ratios = [
        (h / b if higher_is_better else b / h) for b, h in zip(base, head, strict=True) if b and h
    ]
    if not ratios:
        return "—"
    median, low, high = _median_iqr(ratios)
    return f"{median:.2f}x (IQR {low:.2f}-{high:.2f})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Two versions of the services, handshakes interleaved round by round.",
    )
    parser.add_argument("base", help="git revision to compare against")
    parser.add_argument(
        "head", nargs="?", default=WORKING_TREE, help="git revision (default: the working tree)"
    )
    parser.add_argument("--rounds", type=int, default=8, help="rounds per case (2-50, default 8)")
    parser.add_argument(
        "--handshakes", type=int, default=300, help="handshakes per round and side (1-5000)"
    )
    parser.add_argument(
        "--cases",
        default="rsa-full,rsa-resumed,ecdhe-full,ecdhe-resumed",
        help="comma-separated of rsa-full, rsa-resumed, ecdhe-full, ecdhe-resumed",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=900.0, help="stop starting rounds after this long"
    )
    parser.add_argument(
        "--redis", action="store_true", help="both versions on the Redis store (redis-server)"
    )
    return parser


def _cases(value: str) -> list[tuple[Case, bool]]:
    chosen = []
    by_name = {case.key_exchange: case for case in CASES}
    for name in (part.strip() for part in value.split(",") if part.strip()):
        kex, _, kind = name.partition("-")
        if kex not in by_name or kind not in ("full", "resumed"):
            raise SystemExit(f"bench.compare: unknown case {name!r}")
        chosen.append((by_name[kex], kind == "resumed"))
    if not chosen:
        raise SystemExit("bench.compare: no case chosen")
    return chosen


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the with-blocks, which stop every process


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 2 <= args.rounds <= 50 or not 1 <= args.handshakes <= 5000:
        raise SystemExit("bench.compare: --rounds must be 2-50 and --handshakes 1-5000")
    cases = _cases(args.cases)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    deadline = time.monotonic() + args.max_seconds

    def progress(message: str) -> None:
        print(f"bench.compare: {message}", file=sys.stderr, flush=True)

    lines = [
        "| case | base CPU/handshake (server + client) | head CPU/handshake | head vs base, CPU "
        "| base rate | head rate | head vs base, rate | rounds |"
        + (" Redis round trips (base / head) |" if args.redis else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if args.redis else ""),
    ]
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-compare-")))
        certs = stack.enter_context(certificates())
        sides = [
            Side("base", args.base, stack.enter_context(source_tree(args.base, scratch))),
            Side("head", args.head, stack.enter_context(source_tree(args.head, scratch))),
        ]
        (scratch / "logs").mkdir()
        envs: dict[str, dict[str, str]] = {side.label: {} for side in sides}
        if args.redis:
            _process, store = stack.enter_context(redis_server(scratch))
            # A database each: neither version reads the other's keys.
            envs = {side.label: redis_env(store, scratch, db) for db, side in enumerate(sides, 1)}
        stacks = {
            side.label: stack.enter_context(
                lab_stack(
                    certs,
                    scratch / "logs",
                    envs[side.label],
                    root=side.root,
                    label=f"{side.label}-",
                )
            )
            for side in sides
        }
        progress(f"base {args.base} and head {args.head} are up")
        for case, resumed in cases:
            name = f"{case.label} {'resumed' if resumed else 'full'}"
            samples = {label: Samples() for label in stacks}
            bodies = {}
            for label, lab in stacks.items():
                with HttpClient(lab.client.port) as client:
                    bodies[label] = handshake_body(client, case, resumed)
                # Warm up: caches, the allocator, the threads.
                _round(lab, bodies[label], min(50, args.handshakes))
            for index in range(args.rounds):
                if time.monotonic() > deadline:
                    progress(f"{name}: --max-seconds reached after {index} rounds")
                    break
                order = ("base", "head") if index % 2 == 0 else ("head", "base")
                for label in order:
                    server_ms, client_ms, rate, trips = _round(
                        stacks[label], bodies[label], args.handshakes, redis=args.redis
                    )
                    samples[label].server_ms.append(server_ms)
                    samples[label].client_ms.append(client_ms)
                    samples[label].rate.append(rate)
                    samples[label].trips.append(trips)
            base, head = samples["base"], samples["head"]
            rounds = min(len(base.rate), len(head.rate))
            if rounds == 0:
                continue
            lines.append(
                f"| {name} "
                f"| {statistics.median(base.cpu_ms()):.2f} ms "
                f"({statistics.median(base.server_ms):.2f} + {statistics.median(base.client_ms):.2f}) "
                f"| {statistics.median(head.cpu_ms()):.2f} ms "
                f"({statistics.median(head.server_ms):.2f} + {statistics.median(head.client_ms):.2f}) "
                f"| {_ratio_cell(base.cpu_ms()[:rounds], head.cpu_ms()[:rounds], higher_is_better=False)} "
                f"| {statistics.median(base.rate):.0f}/s | {statistics.median(head.rate):.0f}/s "
                f"| {_ratio_cell(base.rate[:rounds], head.rate[:rounds], higher_is_better=True)} "
                f"| {rounds} |"
                + (
                    f" {statistics.median(base.trips):.1f} / {statistics.median(head.trips):.1f} |"
                    if args.redis
                    else ""
                )
            )
            progress(f"{name}: done")
    command = shlex.join(
        ["python", "-m", "bench.compare", *(sys.argv[1:] if argv is None else argv)]
    )
    print(f"`{command}`; ratios > 1 mean head is faster (less CPU, more handshakes/s)\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
