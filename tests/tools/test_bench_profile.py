"""``python -m bench.profile``: the sample classifier, and a smoke run against real workers.

The classifier decides which part of the stack a CPU sample is charged to (docs/performance.md
reads its table), so its rules are checked frame by frame. The smoke run checks that py-spy
attaches to both workers, that the buckets add up to the total, and that nothing the tool
started outlives it; it does not judge the numbers.
"""

from __future__ import annotations

import re

import pytest
from helpers.processes import run_marked
from helpers.redis_server import require_redis_server

from bench.profile import KERNEL, OTHER, classify


@pytest.mark.parametrize(
    ("stack", "bucket", "part"),
    [
        # The innermost known frame decides: JSON called by the services is JSON.
        ("t;run (gunicorn/arbiter.py:1);call (/app/client_svc/upstream.py:2);"
         "loads (json/__init__.py:3)", "JSON encoding and decoding", "mandated"),
        ("t;handle (gunicorn/workers/gthread.py:1);request (/app/client_svc/upstream.py:2);"
         "begin (http/client.py:3);parsestr (email/parser.py:4)", "HTTP client", "mandated"),
        ("t;a (gunicorn/workers/gthread.py:1);b (/app/server_svc/service.py:2);"
         "c (/app/kdf_lib/handshake.py:3);d (/app/kdf_lib/trace.py:4)", "step trace", "lab"),
        ("t;a (/app/server_svc/service.py:2);c (/app/kdf_lib/kex.py:3)", "the protocol",
         "protocol"),
        ("t;a (/app/lab_common/app.py:1);b (flask/app.py:2)", "Flask", "mandated"),
        ("t;a (/app/server_svc/views.py:1)", "the services", "lab"),
        ("t;a (/app/server_svc/service.py:1);b (logging/__init__.py:2)", "logging", "lab"),
        ("t;a (gunicorn/workers/gthread.py:1);b (selectors.py:2)", "gunicorn", "mandated"),
        # A directory boundary, not a substring: "myjson/" is not the json module.
        ("t;a (myjson/x.py:1)", "other Python", "mandated"),
    ],
)  # fmt: skip
def test_a_sample_is_charged_to_its_innermost_known_frame(stack, bucket, part):
    name, got_part = classify(stack)
    assert name.startswith(bucket)
    assert got_part == part


@pytest.mark.parametrize("store", [[], ["--redis"]], ids=["memory", "redis"])
def test_a_quick_profile_of_real_workers_adds_up(store):
    if store:
        require_redis_server()
    run = run_marked("bench.profile", "--quick", "--handshakes", "60", *store)
    result = run.result
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^\| ([^|*]+?) \| [^|]+ \| ([\d.]+) \|", result.stdout, re.M)
    }
    assert KERNEL[0] in rows and "the protocol (kdf_lib, cryptography)" in rows
    assert OTHER[0] not in rows or rows[OTHER[0]] < sum(rows.values())
    parts = [
        float(x)
        for x in re.findall(r"^\| \*\*[^|]+\*\* \| \| \*\*([\d.]+)\*\*", result.stdout, re.M)
    ]
    *three, total = parts
    assert len(three) == 3 and total > 0
    assert abs(sum(three) - total) < 0.01 * total + 0.005
    assert abs(sum(rows.values()) - total) < 0.01 * total + 0.005
    # On the Redis store, the header says how many round trips a handshake took: a full one four
    # (docs/scaling.md), a metrics scrape's key count may add one. (Whether redis-py shows as a
    # row depends on sampling: a quick run may catch none of its 0.2 ms a handshake.)
    trips = re.search(r", ([\d.]+) Redis round trips each", result.stdout)
    assert (trips is not None) == bool(store)
    if trips is not None:
        assert 4 <= float(trips.group(1)) < 5
    assert run.leftovers() == []
