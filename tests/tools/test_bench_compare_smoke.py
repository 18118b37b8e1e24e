"""``python -m bench.compare`` still runs: two versions up at once, rounds interleaved, a table.

Nothing here looks at the numbers (a benchmark is not a test): with two rounds of a few
handshakes it checks that HEAD, exported with git archive, and the working tree both come up,
that the table has its rows, and that no process the tool started outlives it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.processes import run_marked
from helpers.redis_server import require_redis_server

ROOT = Path(__file__).resolve().parents[2]


def test_compare_runs_head_against_the_working_tree():
    run = run_marked(
        "bench.compare",
        "HEAD",
        "--rounds",
        "2",
        "--handshakes",
        "3",
        "--cases",
        "rsa-full,ecdhe-resumed",
    )
    result = run.result
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| case | base CPU/handshake (server + client) |" in result.stdout
    assert "| RSA full |" in result.stdout
    assert "| ECDHE resumed |" in result.stdout
    assert run.leftovers() == []


def test_compare_runs_both_versions_on_the_redis_store():
    """--redis: both versions keep their state in the run's own redis-server, and each row says
    how many round trips a handshake took (a full one needs four: docs/scaling.md)."""
    require_redis_server()
    run = run_marked(
        "bench.compare", "HEAD", "--redis", "--rounds", "2", "--handshakes", "5",
        "--cases", "ecdhe-full",
    )  # fmt: skip
    result = run.result
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| Redis round trips (base / head) |" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("| ECDHE full |"))
    base, head = (float(trips) for trips in row.rstrip(" |").split("|")[-1].split(" / "))
    # At least the four; a round's metrics scrapes may add a key count's SCAN for each service
    # (a count is reused for 2 s): at most two more over the five handshakes.
    assert 4 <= base < 5 and 4 <= head < 5
    assert run.leftovers() == []


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


def test_compare_without_redis_server_says_how_to_get_one(tmp_path):
    """--redis where no redis-server is installed (an empty PATH here): one line saying what to
    install and a failing exit status, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.compare", "WORKTREE", "WORKTREE", "--redis"],
        cwd=ROOT,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "apt-get install redis-server" in result.stderr
    assert "Traceback" not in result.stderr
