"""The benchmark still runs: its quick mode (a few seconds) exits 0 and prints the table.

A benchmark is not a test, so nothing here looks at the numbers; it only proves that
`python -m bench --quick` works, as the README promises.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_mode_prints_the_kdf_table(tmp_path):
    output = tmp_path / "table.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--sections", "kdf", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = output.read_text()
    assert "| benchmark | lab | anchor |" in table
    for row in ("master secret + 128-byte key block", "AES-128-GCM, 64 KiB", "ChaCha20-Poly1305"):
        assert row in table
