"""Finding the processes a test started, wherever they were re-parented."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def processes_with(marker: bytes) -> list[int]:
    """PIDs whose environment holds ``marker`` (children inherit it, wherever they are re-parented)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass(frozen=True)
class MarkedRun:
    """A tool's finished run, and the environment marker its processes carried."""

    result: subprocess.CompletedProcess[str]
    marker: bytes

    def leftovers(self) -> list[int]:
        """Processes the run started that still run (none, when the tool cleaned up)."""
        return processes_with(self.marker)


def run_marked(module: str, *args: str, timeout: float = 300) -> MarkedRun:
    """``python -m module args`` from the repository root with a fresh marker in its
    environment, its output captured as text."""
    name, value = "LAB_TOOL_SMOKE", secrets.token_hex(8)
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return MarkedRun(result, f"{name}={value}".encode())
