"""The service sections of the benchmark still run: quick mode exits 0 and prints their rows.

`python -m bench --quick --sections handshake,message,memory` starts server_svc, client_svc, an
echo app, OpenSSL's s_server and a tlslite-ng server on free 127.0.0.1 ports and stops them all
by PID. As for the kdf section, nothing here looks at the numbers (a benchmark is not a test);
it checks the rows are there, and that no process the benchmark started outlives it.
"""

from __future__ import annotations

from helpers.processes import run_marked


def test_bench_quick_mode_prints_the_service_tables(tmp_path):
    output = tmp_path / "table.md"
    run = run_marked(
        "bench", "--quick", "--sections", "handshake,message,memory", "--output", str(output)
    )
    result = run.result
    assert result.returncode == 0, result.stderr[-3000:]
    table = output.read_text()
    assert "| benchmark | lab | anchor |" in table
    for row in (
        "| RSA full handshake, 1 client |",
        "| RSA resumed handshake, 4 clients |",
        "| ECDHE full handshake, 4 clients |",
        "OpenSSL s_server + s_time -new",
        "tlslite-ng TLSConnection",
        "| /message CBC+HMAC (TLS_RSA_WITH_AES_256_CBC_SHA256), 1 KiB |",
        "| /message GCM (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256), 1 MiB |",
        "bare Flask echo under gunicorn",
        "binary /records (application/tls-records)",
        "server_svc worker RSS",
        "RSS per established connection",
        "after a second fill",
    ):
        assert row in table, row
    assert run.leftovers() == [], "a process the benchmark started still runs"
