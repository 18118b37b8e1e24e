"""Section "message": application data through server_svc's /message, against the HTTP ceiling.

The benchmark makes its own connection with server_svc (kdf_lib's ClientHandshake over
http.client), seals each message with kdf_lib (RFC 5246 §6.2.3, RFC 7366, RFC 5288), posts
``{connection_id, record}`` to /message and opens the echo. The anchor is bench.echo_app, a bare
Flask app under gunicorn with server_svc's gunicorn.conf.py that echoes the same JSON body with no
cryptography. A third runner, in the same rounds, posts the same records as a raw
``application/tls-records`` body to server_svc's POST /records/<connection_id>.
"""

from __future__ import annotations

import base64
import json
import statistics
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from kdf_lib.handshake import Connection
from lab_common.contract import CONNECTION_ID_LENGTH, MESSAGE, RECORDS, RECORDS_MEDIA_TYPE, path

from .lab_client import LabConnection, client_config, handshake
from .load import (
    Plan,
    Run,
    Runner,
    closed_loop,
    cpu_share,
    interleave,
    percentile,
    plan_for,
    summarize,
)
from .report import Row, Target, format_rate, format_throughput
from .services import ROOT, Certificates, GunicornApp, HttpClient, certificates, gunicorn
from .timing import Budget

__all__ = ["CASES", "SIZES", "TITLE", "run"]

TITLE = "/message throughput"

#: Targets from the issues: small messages at 90 % of the echo's rate (issue 14; 70 % before),
#: 1 MiB at half its MB/s.
SMALL_VS_ECHO = Target(0.9, "messages/s")
LARGE_VS_ECHO = Target(0.5, "MB/s")

CASES = (
    ("CBC+HMAC", "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    ("GCM", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
)
SIZES = (
    (1024, "1 KiB", SMALL_VS_ECHO),
    (64 * 1024, "64 KiB", None),
    (1 << 20, "1 MiB", LARGE_VS_ECHO),
)


class AnchorMismatch(RuntimeError):
    """An echo did not carry back what was sent."""


def _json_body(connection_id: str, record: bytes) -> bytes:
    text = base64.b64encode(record).decode("ascii")
    return json.dumps(
        {"connection_id": connection_id, "record": text}, separators=(",", ":")
    ).encode()


def _lab_message(client: HttpClient, lab: LabConnection, payload: bytes) -> int:
    """One message through server_svc's JSON /message: seal, post, open the echo."""
    conn: Connection = lab.connection
    status, data = client.request(
        "POST", MESSAGE, _json_body(lab.connection_id, conn.seal(payload))
    )
    if status != 200:
        raise RuntimeError(f"server_svc /message answered {status}: {data[:300]!r}")
    reply = conn.open(base64.b64decode(json.loads(data)["record"], validate=True))
    if not reply.endswith(payload):
        raise AnchorMismatch("server_svc's echo does not end with the message")
    return len(payload)


def _binary_message(client: HttpClient, lab: LabConnection, payload: bytes) -> int:
    """The same through server_svc's binary /records: raw records in, raw records out."""
    conn = lab.connection
    status, data = client.request(
        "POST", path(RECORDS, lab.connection_id), conn.seal(payload), RECORDS_MEDIA_TYPE
    )
    if status != 200:
        raise RuntimeError(f"binary /records answered {status}: {data[:300]!r}")
    if not conn.open(data).endswith(payload):
        raise AnchorMismatch("the binary echo does not end with the message")
    return len(payload)


def _echo_message(client: HttpClient, record: bytes, size: int) -> int:
    """The anchor: the same JSON body with a record of the same size; no cryptography."""
    status, data = client.request("POST", MESSAGE, _json_body("0" * CONNECTION_ID_LENGTH, record))
    if status != 200:
        raise RuntimeError(f"echo answered {status}: {data[:300]!r}")
    if base64.b64decode(json.loads(data)["record"], validate=True) != record:
        raise AnchorMismatch("the echo app changed the record")
    return size


def _runner(
    port: int, operation: Callable[[HttpClient], int], plan: Plan, watch: dict[str, int]
) -> Runner:
    def factory() -> tuple[Callable[[], int], Callable[[], None]]:
        client = HttpClient(port)
        return (lambda: operation(client)), client.close

    def run(seconds: float) -> Run:
        return closed_loop([factory], seconds, plan.max_operations, watch)

    return run


@dataclass
class Servers:
    lab: GunicornApp
    echo: GunicornApp
    binary: GunicornApp


def _start(stack: ExitStack, certs: Certificates, log_dir: Path) -> Servers:
    conf = ROOT / "server_svc" / "gunicorn.conf.py"
    identity = {"SERVER_CERT_CHAIN": str(certs.chain), "SERVER_KEY": str(certs.key)}
    return Servers(
        lab=stack.enter_context(
            gunicorn("server_svc", "server_svc:create_app()", conf, identity, log_dir)
        ),
        echo=stack.enter_context(
            gunicorn("echo", "bench.echo_app:create_app()", conf, {}, log_dir)
        ),
        binary=stack.enter_context(
            gunicorn("server_svc-records", "server_svc:create_app()", conf, identity, log_dir)
        ),
    )


def _lab_cell(runs: list[Run], size: int) -> str:
    rate = statistics.median(run.rate for run in runs)
    latencies = [latency for run in runs for latency in run.latencies]
    return (
        f"{format_rate(rate, 'msg/s')}, {format_throughput(rate * size)}, "
        f"p50 {1000 * percentile(latencies, 0.5):.3g} ms, p99 {1000 * percentile(latencies, 0.99):.3g} ms "
        f"(load gen {cpu_share(runs):.0%} CPU)"
    )


def _cpu_per_message(runs: list[Run], process: str) -> float:
    operations = sum(run.operations for run in runs)
    cpu = sum(run.process_cpu.get(process, 0.0) for run in runs)
    return 1000 * cpu / operations if operations else 0.0


def _anchor_cell(rate: float, size: int) -> str:
    return f"{format_rate(rate, 'msg/s')}, {format_throughput(rate * size)}"


def run(budget: Budget, progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    """Both suites at 1 KiB, 64 KiB and 1 MiB: server_svc, the echo and server_svc's binary /records."""
    plan = plan_for(budget)
    rows: list[Row] = []
    with ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-message-")))
        certs = stack.enter_context(certificates())
        progress("starting server_svc (twice: JSON and /records) and the echo app under gunicorn")
        servers = _start(stack, certs, log_dir)
        for label, suite in CASES:
            config = client_config(certs, suite)
            with HttpClient(servers.lab.port) as client:
                lab = handshake(client, config)
            with HttpClient(servers.binary.port) as client:
                binary = handshake(client, config)
            for size, size_label, target in SIZES:
                payload = bytes(range(256)) * (size // 256)
                # The first message, sent by hand: its records, as they crossed the wire, are
                # what the echo runner sends (same size, same base64), and it checks the path.
                record = lab.connection.seal(payload)
                with HttpClient(servers.lab.port) as client:
                    status, data = client.request(
                        "POST", MESSAGE, _json_body(lab.connection_id, record)
                    )
                answer = json.loads(data) if status == 200 else {}
                opened = lab.connection.open(base64.b64decode(answer.get("record", "")))
                if not opened.endswith(payload):
                    raise AnchorMismatch(f"server_svc's first {size_label} echo is wrong")
                runners = {
                    "lab": _runner(
                        servers.lab.port,
                        partial(_lab_message, lab=lab, payload=payload),
                        plan,
                        {"server_svc": servers.lab.worker_pid()},
                    ),
                    "echo": _runner(
                        servers.echo.port,
                        partial(_echo_message, record=record, size=size),
                        plan,
                        {"echo": servers.echo.worker_pid()},
                    ),
                    "binary": _runner(
                        servers.binary.port,
                        partial(_binary_message, lab=binary, payload=payload),
                        plan,
                        {"binary": servers.binary.worker_pid()},
                    ),
                }
                progress(f"{label} {size_label}")
                runs = interleave(runners, plan, progress)
                progress(
                    f"{label} {size_label}: worker CPU per message: "
                    + ", ".join(
                        f"{key} {_cpu_per_message(runs[key], proc):.3f} ms"
                        for key, proc in (
                            ("lab", "server_svc"),
                            ("echo", "echo"),
                            ("binary", "binary"),
                        )
                    )
                )
                name = f"/message {label} ({suite}), {size_label}"
                against_echo = summarize(runs["lab"], runs["echo"])
                rows.append(
                    Row(
                        name,
                        _lab_cell(runs["lab"], size),
                        "bare Flask echo under gunicorn (JSON + base64, no crypto)",
                        _anchor_cell(against_echo.anchor_rate, size),
                        against_echo.ratio,
                        against_echo.spread,
                        target,
                    )
                )
                binary_vs_json = summarize(runs["binary"], runs["lab"])
                rows.append(
                    Row(
                        f"binary /records ({RECORDS_MEDIA_TYPE}), {label}, {size_label}",
                        _lab_cell(runs["binary"], size),
                        "the lab's JSON /message, same rounds",
                        _anchor_cell(binary_vs_json.anchor_rate, size),
                        binary_vs_json.ratio,
                        binary_vs_json.spread,
                    )
                )
    return rows
