"""Interleaved timing of a lab function against its anchor, for shared machines.

Each comparison warms both functions up, sizes a batch of calls for each so a
batch takes about ``Budget.batch_seconds``, then runs rounds that time one lab
batch and one anchor batch back to back (alternating which goes first). The
ratio reported is the median of the per-round ratios: noise from other work on
the machine hits both sides of a round alike and mostly cancels. Short batches
and many rounds cancel better than long ones: the two halves of a round are
closer in time.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Budget", "Comparison", "compare"]


@dataclass(frozen=True)
class Budget:
    """How long a comparison may run. Every loop is bounded by both a count and a time."""

    batch_seconds: float  # aim for one timed batch of calls to take this long
    rounds: int  # interleaved rounds wanted (each times one lab and one anchor batch)
    min_rounds: int  # rounds always run, even past the deadline
    max_seconds: float  # deadline for one comparison, calibration included
    max_calls: int  # most calls in one batch, however fast the function


#: `--quick`: a smoke run for CI, a few seconds per section. Ratios are noisier.
QUICK = Budget(batch_seconds=0.01, rounds=7, min_rounds=3, max_seconds=0.4, max_calls=20_000)
#: The default: numbers worth writing down.
FULL = Budget(batch_seconds=0.02, rounds=41, min_rounds=11, max_seconds=4.0, max_calls=200_000)


@dataclass(frozen=True)
class Comparison:
    """The outcome of one interleaved comparison. Rates are calls per second."""

    lab_rate: float  # median over rounds
    anchor_rate: float  # median over rounds
    ratio: float  # median over rounds of lab_rate / anchor_rate (higher: lab faster)
    ratio_q1: float  # first quartile of the per-round ratios, to show the spread
    ratio_q3: float  # third quartile
    rounds: int


def _time_batch(fn: Callable[[], object], calls: int) -> float:
    # As timeit does: a collection landing in one side's batch would skew the round.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def _calibrate(fn: Callable[[], object], budget: Budget, deadline: float) -> int:
    """Calls per batch so that a batch takes about ``budget.batch_seconds``; also warms up."""
    calls = 1
    while True:
        elapsed = _time_batch(fn, calls)
        if elapsed >= budget.batch_seconds or calls >= budget.max_calls:
            return calls
        if time.perf_counter() > deadline:
            break
        # Grow at most tenfold per step: the first tiny batches are the least reliable.
        estimate = int(calls * budget.batch_seconds / max(elapsed, 1e-9))
        calls = min(budget.max_calls, max(calls * 2, min(calls * 10, estimate)))
    # Out of calibration time: scale the last measurement to the target and stop.
    return max(1, min(budget.max_calls, int(calls * budget.batch_seconds / max(elapsed, 1e-9))))


def compare(lab: Callable[[], object], anchor: Callable[[], object], budget: Budget) -> Comparison:
    """Time ``lab`` against ``anchor`` in interleaved rounds and return the medians."""
    deadline = time.perf_counter() + budget.max_seconds
    # Each side gets a share of the deadline for calibration, so a slow one can't starve the rounds.
    calibration_share = budget.max_seconds / 4
    lab_calls = _calibrate(lab, budget, time.perf_counter() + calibration_share)
    anchor_calls = _calibrate(anchor, budget, time.perf_counter() + calibration_share)

    lab_rates: list[float] = []
    anchor_rates: list[float] = []
    ratios: list[float] = []
    for round_index in range(budget.rounds):
        if round_index >= budget.min_rounds and time.perf_counter() > deadline:
            break
        if round_index % 2 == 0:
            lab_time = _time_batch(lab, lab_calls)
            anchor_time = _time_batch(anchor, anchor_calls)
        else:
            anchor_time = _time_batch(anchor, anchor_calls)
            lab_time = _time_batch(lab, lab_calls)
        lab_rate = lab_calls / lab_time
        anchor_rate = anchor_calls / anchor_time
        lab_rates.append(lab_rate)
        anchor_rates.append(anchor_rate)
        ratios.append(lab_rate / anchor_rate)
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return Comparison(
        lab_rate=statistics.median(lab_rates),
        anchor_rate=statistics.median(anchor_rates),
        ratio=statistics.median(ratios),
        ratio_q1=q1,
        ratio_q3=q3,
        rounds=len(ratios),
    )
