"""Rows of benchmark results and the markdown table they make, plus what machine ran them.

Columns: benchmark | lab | anchor | anchor value | ratio (lab/anchor) | target.
A ratio is lab rate / anchor rate, so higher means the lab is faster; rows that measure a
cost (memory) divide lab cost by anchor cost instead, and carry a :class:`Ceiling`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

__all__ = [
    "Ceiling",
    "Row",
    "Target",
    "format_rate",
    "format_throughput",
    "machine_info",
    "render_machine",
    "render_table",
]


def _describe(bound: str, note: str, ratio: float | None, met: Callable[[float], bool]) -> str:
    """The target cell: the bound, its note, and met or missed when there is a ratio."""
    text = f"{bound} ({note})" if note else bound
    if ratio is None:
        return text
    return f"{text}: {'met' if met(ratio) else '**missed**'}"


@dataclass(frozen=True)
class Target:
    """A floor on the ratio lab/anchor. A benchmark never fails on it; the table says met or missed."""

    min_ratio: float
    note: str = ""  # e.g. "time overhead ≤ 1.5x"

    def met(self, ratio: float) -> bool:
        return ratio >= self.min_ratio

    def describe(self, ratio: float | None) -> str:
        return _describe(f"≥ {self.min_ratio:g}x", self.note, ratio, self.met)


@dataclass(frozen=True)
class Ceiling:
    """A cap on the ratio lab/anchor, for costs where lower is better (memory per connection)."""

    max_ratio: float
    note: str = ""  # e.g. "≤ 8 KiB per connection"

    def met(self, ratio: float) -> bool:
        return ratio <= self.max_ratio

    def describe(self, ratio: float | None) -> str:
        return _describe(f"≤ {self.max_ratio:g}x", self.note, ratio, self.met)


@dataclass(frozen=True)
class Row:
    """One line of the table. ``ratio`` is None when the anchor could not run."""

    benchmark: str
    lab: str
    anchor: str
    anchor_value: str
    ratio: float | None
    ratio_spread: tuple[float, float] | None = None  # interquartile range of per-round ratios
    target: Target | Ceiling | None = None

    @property
    def missed(self) -> bool:
        return (
            self.target is not None and self.ratio is not None and not self.target.met(self.ratio)
        )

    def cells(self) -> list[str]:
        if self.ratio is None:
            ratio = "n/a"
        elif self.ratio_spread is None:
            ratio = f"{self.ratio:.2f}x"
        else:
            low, high = self.ratio_spread
            ratio = f"{self.ratio:.2f}x (IQR {low:.2f}-{high:.2f})"
        target = self.target.describe(self.ratio) if self.target else "—"
        return [self.benchmark, self.lab, self.anchor, self.anchor_value, ratio, target]


_HEADER = ["benchmark", "lab", "anchor", "anchor value", "ratio (lab/anchor)", "target"]


def render_table(rows: list[Row]) -> str:
    """The rows as a GitHub markdown table, one line per row."""
    lines = [
        "| " + " | ".join(_HEADER) + " |",
        "|" + "|".join(["---"] * len(_HEADER)) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |")
    return "\n".join(lines)


def format_rate(value: float, unit: str) -> str:
    """``1234567.0, "derivations/s"`` → ``"1.23 M derivations/s"``: three significant digits."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix} {unit}"
    return f"{value:.3g} {unit}"


def format_throughput(bytes_per_second: float) -> str:
    """Bytes per second in MB/s (10^6 bytes): whole numbers from 100 up, else three digits."""
    megabytes = bytes_per_second / 1e6
    return f"{megabytes:,.0f} MB/s" if megabytes >= 100 else f"{megabytes:.3g} MB/s"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    """What ran the benchmarks: CPU, cores, Python and the crypto library versions."""
    try:
        from cryptography.hazmat.backends.openssl import backend

        openssl = backend.openssl_version_text()
    except Exception:  # the report must not die on an odd cryptography build
        openssl = "unknown"
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cryptography": _version("cryptography"),
        "openssl": openssl,
        "tlslite-ng": _version("tlslite-ng"),
        "platform": platform.platform(),
    }


def render_machine(info: dict[str, str], command: str) -> str:
    """A short markdown list naming the machine and the exact command."""
    lines = [f"- {key}: {value}" for key, value in info.items()]
    lines.append(f"- command: `{command}`")
    return "\n".join(lines)
