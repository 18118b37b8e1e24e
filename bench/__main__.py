"""``python -m bench``: run benchmark sections and print one markdown table.

    python -m bench                          # every section, full budget
    python -m bench --quick --sections kdf   # the CI smoke run, a few seconds
    python -m bench --output results.md      # also write machine + table to a file
    python -m bench --sections fleet         # the scaled stack under load (needs Docker)

Targets are reported as met or missed; they never change the exit status (a
benchmark is not a test). Exit 1 means an anchor disagreed with the lab's bytes.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .report import Row, machine_info, render_machine, render_table
from .timing import FULL, QUICK, Budget

#: Section name → module. Each module has ``TITLE`` and ``run(budget, progress) -> list[Row]``
#: and is imported only when selected, so one section's dependencies never slow another.
SECTIONS: dict[str, str] = {
    "kdf": "bench.kdf",
    "handshake": "bench.handshake",
    "message": "bench.message",
    "memory": "bench.memory",
    "scale": "bench.scale",
    "fleet": "bench.fleet",
}
#: Run unless --sections names others: every section but those that need Docker.
DEFAULT_SECTIONS = [name for name in SECTIONS if name != "fleet"]


class Section(Protocol):
    TITLE: str

    def run(self, budget: Budget, progress: Callable[[str], None]) -> list[Row]: ...


def _section_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SECTIONS)}"
        )
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="The TLS 1.2 lab's benchmarks: lab rates against anchors timed in the same run.",
    )
    parser.add_argument(
        "--sections",
        type=_section_names,
        default=DEFAULT_SECTIONS,
        help=(
            f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all but fleet, "
            "which needs Docker and starts the scaled stack)"
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a few seconds per section (for CI); noisier ratios",
    )
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="also write the machine and table as markdown"
    )
    return parser


def _prefixed(progress: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    def report(message: str) -> None:
        progress(f"{prefix}: {message}")

    return report


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # SystemExit unwinds the sections' with-blocks, which stop every process they started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    budget = QUICK if args.quick else FULL
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])

    def progress(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    parts = []
    for name in args.sections:
        section: Section = importlib.import_module(SECTIONS[name])
        progress(f"section {name}: {section.TITLE}")
        rows = section.run(budget, _prefixed(progress, name))
        parts.append((section.TITLE, rows))
    elapsed = time.perf_counter() - started

    tables = "\n\n".join(f"### {title}\n\n{render_table(rows)}" for title, rows in parts)
    print(tables)
    missed = [row.benchmark for _, rows in parts for row in rows if row.missed]
    progress(
        f"done in {elapsed:.1f} s ({'quick' if args.quick else 'full'} budget); "
        f"targets missed: {len(missed)}"
    )
    if args.output is not None:
        document = f"{render_machine(machine_info(), command)}\n\n{tables}\n"
        args.output.write_text(document, encoding="utf-8")
        progress(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
