"""scripts/load-test itself: its report and its exit status, against services on 127.0.0.1.

The compose run (with container memory) is tests/e2e/test_faults.py; here client_svc and
server_svc run in-process on real HTTP servers, so the script is checked without Docker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from client_svc import create_app as create_client_app
from kdf_lib import pki

from .netfaults import closed_port, serve_app

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "load-test"


def run_load_test(*args: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def client_url_for(ca: pki.Issued) -> Iterator[Any]:
    """Serves a client_svc pointed at the given server port; yields its base URL."""
    apps: list[Flask] = []

    def client_url(server_port: int) -> Any:
        app = create_client_app(
            {
                "TRUST_ANCHORS": (ca.certificate,),
                "SERVER_URL": f"http://127.0.0.1:{server_port}",
                "SERVER_NAME": "server",
                "UPSTREAM_CONNECT_TIMEOUT": 1.0,
                "UPSTREAM_READ_TIMEOUT": 5.0,
            }
        )
        apps.append(app)
        return serve_app(app)

    yield client_url
    for app in apps:
        app.extensions["client_service"].server.transport.close()


def test_a_clean_run_reports_every_kind_of_request_and_exits_0(
    server_app: Flask, client_url_for: Any
) -> None:
    with serve_app(server_app) as server_port, client_url_for(server_port) as client_port:
        status, out, err = run_load_test(
            "--url",
            f"http://127.0.0.1:{client_port}",
            "--clients",
            "2",
            "--seconds",
            "1.5",
            "--warmup",
            "1",
            "--json",
        )
    assert status == 0, err + out
    report = json.loads(out)
    assert report["errors"] == 0 and report["status_5xx"] == 0
    kinds = report["requests_by_kind"]
    assert set(kinds) == {"handshake_rsa", "handshake_ecdhe", "handshake_resumed", "message"}
    assert report["requests"] == sum(kinds.values()) > 0
    assert report["handshakes_per_s"] > 0 and report["latency_ms"]["p50"] > 0
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert report["compose_project"] is None and report["memory_mib"] == {}
    assert report["held"]["client"]["end"]["connections"] > 0


def test_the_request_budget_bounds_the_run(server_app: Flask, client_url_for: Any) -> None:
    with serve_app(server_app) as server_port, client_url_for(server_port) as client_port:
        status, out, err = run_load_test(
            "--url",
            f"http://127.0.0.1:{client_port}",
            "--clients",
            "3",
            "--seconds",
            "30",
            "--max-requests",
            "25",
            "--warmup",
            "0",
            "--json",
        )
    assert status == 0, err + out
    report = json.loads(out)
    assert report["requests"] == 25 and report["seconds"] < 30


def test_errors_are_counted_by_code_and_fail_the_run(client_url_for: Any) -> None:
    with client_url_for(closed_port()) as client_port:
        status, out, _ = run_load_test(
            "--url",
            f"http://127.0.0.1:{client_port}",
            "--clients",
            "1",
            "--seconds",
            "0.5",
            "--warmup",
            "0",
        )
    assert status == 1
    assert "upstream_unavailable:" in out
    assert "5xx           " in out and "5xx           0" not in out


def test_no_client_svc_at_the_url_exits_2() -> None:
    status, _, err = run_load_test("--url", f"http://127.0.0.1:{closed_port()}", "--seconds", "1")
    assert status == 2 and "no client_svc answers" in err


def test_unbounded_arguments_are_refused() -> None:
    for args in (["--seconds", "0"], ["--seconds", "100000"], ["--clients", "1000"]):
        status, _, err = run_load_test(*args)
        assert status == 2, args
        assert "must be" in err
