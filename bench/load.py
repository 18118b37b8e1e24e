"""Closed-loop load and interleaved rounds for the service sections (HTTP, sockets, processes).

A *runner* does one side of a comparison for about ``seconds`` and returns a :class:`Run`.
:func:`interleave` runs every runner of a comparison once per round, reversing the order on
every other round, and the ratios reported are medians of per-round ratios, as in
:mod:`bench.timing`: noise from other work on a shared machine hits neighbouring runs alike.
:func:`closed_loop` is the load generator: N threads, each with its own connection, each
sending its next request as soon as the previous answer arrived.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .services import cpu_seconds
from .timing import QUICK, Budget

__all__ = [
    "FULL_PLAN",
    "QUICK_PLAN",
    "Plan",
    "Run",
    "Summary",
    "closed_loop",
    "interleave",
    "per_cpu_second",
    "plan_for",
    "summarize",
]


@dataclass(frozen=True)
class Plan:
    """How long one comparison of runners may take. Every loop is bounded by count and time."""

    run_seconds: float  # one runner's share of a round
    rounds: int  # rounds wanted
    min_rounds: int  # rounds always run
    max_seconds: float  # deadline for a comparison (rounds stop after it, past min_rounds)
    warmup_seconds: float  # each runner once, untimed, before the rounds (0: none)
    max_operations: int  # most operations of one runner's run, however fast


#: ``--quick``: one short round; no spread, just proof that every path works.
QUICK_PLAN = Plan(
    run_seconds=0.25,
    rounds=1,
    min_rounds=1,
    max_seconds=30.0,
    warmup_seconds=0.0,
    max_operations=2_000,
)
#: The default: several rounds of about 1.5 s per runner.
FULL_PLAN = Plan(
    run_seconds=1.5,
    rounds=5,
    min_rounds=3,
    max_seconds=120.0,
    warmup_seconds=0.3,
    max_operations=200_000,
)


def plan_for(budget: Budget) -> Plan:
    return QUICK_PLAN if budget == QUICK else FULL_PLAN


@dataclass(frozen=True)
class Run:
    """What one runner did in one round."""

    operations: int
    seconds: float
    payload_bytes: int = 0  # application bytes moved (for MB/s), where that means something
    latencies: tuple[float, ...] = ()  # seconds per operation, when measured
    generator_cpu: float = 0.0  # CPU seconds the load generator (this process) spent
    process_cpu: Mapping[str, float] = field(default_factory=dict)  # CPU seconds of watched PIDs

    @property
    def rate(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else 0.0


Runner = Callable[[float], Run]


def _nothing() -> None:
    pass


#: Called in a load thread before the start signal; returns (one operation, close). The
#: operation returns the payload bytes it moved (0 when that means nothing).
ClientFactory = Callable[[], tuple[Callable[[], int], Callable[[], None]]]


def closed_loop(
    factories: Sequence[ClientFactory],
    seconds: float,
    max_operations: int,
    watch: Mapping[str, int] | None = None,
) -> Run:
    """One thread per factory, all started together, each repeating its operation until the
    deadline or until the threads together did ``max_operations``. Latencies are per operation.

    ``watch`` names processes (name -> PID) whose CPU time over the run is reported.
    """
    watch = dict(watch or {})
    ready = threading.Barrier(len(factories) + 1)  # every client connected and set up
    go = threading.Event()  # then the clock starts
    lock = threading.Lock()
    latencies: list[list[float]] = [[] for _ in factories]
    payload = [0] * len(factories)
    errors: list[BaseException] = []
    done = 0
    deadline = 0.0

    def worker(index: int) -> None:
        nonlocal done
        close: Callable[[], None] = _nothing
        try:
            operation, close = factories[index]()
            ready.wait()
            go.wait()
            mine = latencies[index]
            while time.perf_counter() < deadline and not errors:
                with lock:
                    if done >= max_operations:
                        break
                    done += 1
                started = time.perf_counter()
                payload[index] += operation()
                mine.append(time.perf_counter() - started)
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            errors.append(exc)
            ready.abort()
        finally:
            close()

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(factories))
    ]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(timeout=120)
    cpu_before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    own_before = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    go.set()
    for thread in threads:
        thread.join(timeout=seconds + 300)
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    merged = [latency for per_thread in latencies for latency in per_thread]
    return Run(
        operations=len(merged),
        seconds=elapsed,
        payload_bytes=sum(payload),
        latencies=tuple(merged),
        generator_cpu=time.process_time() - own_before,
        process_cpu={name: cpu_seconds(pid) - cpu_before[name] for name, pid in watch.items()},
    )


def interleave(
    runners: Mapping[str, Runner], plan: Plan, progress: Callable[[str], None]
) -> dict[str, list[Run]]:
    """Every runner once per round (reversed order on odd rounds); the runs by runner name."""
    names = list(runners)
    if plan.warmup_seconds > 0:
        for name in names:
            runners[name](plan.warmup_seconds)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    deadline = time.monotonic() + plan.max_seconds
    for round_index in range(plan.rounds):
        if round_index >= plan.min_rounds and time.monotonic() > deadline:
            break
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            runs[name].append(runners[name](plan.run_seconds))
        progress(
            f"round {round_index + 1}: "
            + ", ".join(f"{name} {runs[name][-1].rate:,.1f}/s" for name in names)
        )
    return runs


@dataclass(frozen=True)
class Summary:
    lab_rate: float  # median over rounds
    anchor_rate: float  # median over rounds
    ratio: float  # median of the per-round ratios lab/anchor
    spread: tuple[float, float] | None  # their interquartile range (3 rounds or more)


def summarize(
    lab: Sequence[Run],
    anchor: Sequence[Run],
    lab_rate: Callable[[Run], float] | None = None,
    anchor_rate: Callable[[Run], float] | None = None,
) -> Summary:
    """Median rates and the median of per-round ratios, as bench.timing.compare reports them.

    ``lab_rate`` / ``anchor_rate`` say what a run's rate is: operations per second by default,
    or e.g. operations per CPU-second (:func:`per_cpu_second`).
    """
    lab_rates = [lab_rate(run) if lab_rate else run.rate for run in lab]
    anchor_rates = [anchor_rate(run) if anchor_rate else run.rate for run in anchor]
    ratios = [a / b if a and b else 0.0 for a, b in zip(lab_rates, anchor_rates, strict=True)]
    spread = None
    if len(ratios) >= 3:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        spread = (q1, q3)
    return Summary(
        lab_rate=statistics.median(lab_rates),
        anchor_rate=statistics.median(anchor_rates),
        ratio=statistics.median(ratios),
        spread=spread,
    )


def per_cpu_second(processes: Sequence[str], generator: bool = False) -> Callable[[Run], float]:
    """A run's operations per CPU-second of the named processes (plus this one's, if asked).

    CPU time is spent only while a process runs, so this rate shrugs off other work on a
    shared machine far better than wall-clock rates do.
    """

    def rate(run: Run) -> float:
        cpu = sum(run.process_cpu.get(name, 0.0) for name in processes)
        cpu += run.generator_cpu if generator else 0.0
        return run.operations / cpu if cpu > 0 else 0.0

    return rate


def cpu_share(runs: Sequence[Run]) -> float:
    """The load generator's CPU as a share of the machine (all cores) over these runs."""
    seconds = sum(run.seconds for run in runs)
    cores = os.cpu_count() or 1
    return sum(run.generator_cpu for run in runs) / (seconds * cores) if seconds else 0.0


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p50: 0.5, p99: 0.99)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]
