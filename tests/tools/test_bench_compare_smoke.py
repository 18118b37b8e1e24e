"""``python -m bench.compare`` still runs: two versions up at once, rounds interleaved, a table.

Nothing here looks at the numbers (a benchmark is not a test): with two rounds of a few
handshakes it checks that HEAD, exported with git archive, and the working tree both come up,
that the table has its rows, and that no process the tool started outlives it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from helpers.processes import processes_with

ROOT = Path(__file__).resolve().parents[2]


def test_compare_runs_head_against_the_working_tree():
    marker = f"LAB_COMPARE_SMOKE={secrets.token_hex(8)}"
    name, value = marker.split("=")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.compare",
            "HEAD",
            "--rounds",
            "2",
            "--handshakes",
            "3",
            "--cases",
            "rsa-full,ecdhe-resumed",
        ],
        cwd=ROOT,
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| case | base CPU/handshake (server + client) |" in result.stdout
    assert "| RSA full |" in result.stdout
    assert "| ECDHE resumed |" in result.stdout
    assert processes_with(marker.encode()) == []


def test_compare_refuses_an_unknown_revision():
    result = subprocess.run(
        [sys.executable, "-m", "bench.compare", "no-such-revision-here", "--rounds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "git archive no-such-revision-here" in result.stderr
