"""Section "handshake": handshakes per second through the real services, against real TLS stacks.

The lab path is the user's: ``POST /handshake`` on client_svc, which runs kdf_lib's client
against server_svc over HTTP JSON (RFC 5246 §7.3 full handshakes, §7.3 abbreviated ones for
``resume``). Both services run under gunicorn with their own gunicorn.conf.py, as in compose.
Anchors, timed in the same rounds: ``openssl s_server`` with ``openssl s_time`` (the same suite,
TLS 1.2, session-ID resumption) and tlslite-ng's TLSConnection on both ends.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab_common.contract import HANDSHAKE

from .load import (
    ClientFactory,
    Plan,
    Run,
    Runner,
    closed_loop,
    cpu_share,
    interleave,
    per_cpu_second,
    plan_for,
    summarize,
)
from .report import Row, Target, format_rate
from .services import (
    ROOT,
    Certificates,
    GunicornApp,
    HttpClient,
    Process,
    certificates,
    cpu_seconds,
    free_port,
)
from .timing import Budget
from .tlslite_peer import SUITE_IDS, settings

__all__ = ["CASES", "TITLE", "run"]

TITLE = "Service handshakes per second"

#: Targets from the issue: full handshakes at least half OpenSSL's rate and four times
#: tlslite-ng's; a resumed handshake at least twice as fast as a full one.
FULL_VS_OPENSSL = Target(0.5)
FULL_VS_TLSLITE = Target(4.0)
RESUMED_VS_FULL = Target(2.0)

CLIENTS = (1, 4)


class AnchorMismatch(RuntimeError):
    """An anchor did not do the same handshake as the lab (suite, resumption)."""


@dataclass(frozen=True)
class Case:
    label: str
    key_exchange: str  # "rsa" or "ecdhe": client_svc's name and tlslite_peer's
    suite: str  # IANA name, as the lab's API takes it
    openssl_cipher: str  # the same suite in OpenSSL's names


CASES = (
    Case("RSA", "rsa", "TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
    Case("ECDHE", "ecdhe", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
)


# -- the lab: POST /handshake on client_svc ---------------------------------------------------


@dataclass
class LabStack:
    server: GunicornApp
    client: GunicornApp

    def watch(self) -> dict[str, int]:
        return {"server_svc": self.server.worker_pid(), "client_svc": self.client.worker_pid()}

    def ports(self) -> tuple[int, int]:
        return self.server.port, self.client.port


@contextmanager
def lab_stack(
    certs: Certificates,
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    root: Path = ROOT,
    label: str = "",
) -> Iterator[LabStack]:
    """server_svc and client_svc under gunicorn with their gunicorn.conf.py, as scripts/dev-run
    runs them; both start at once (client_svc reaches server_svc only when asked to).
    ``root`` is the source tree to run; ``label`` tells two stacks' logs apart."""
    with ExitStack() as stack:
        server = GunicornApp(
            f"{label}server_svc",
            "server_svc:create_app()",
            root / "server_svc" / "gunicorn.conf.py",
            {"SERVER_CERT_CHAIN": str(certs.chain), "SERVER_KEY": str(certs.key), **(env or {})},
            log_dir,
            root=root,
        )
        stack.callback(server.stop)
        client = GunicornApp(
            f"{label}client_svc",
            "client_svc:create_app()",
            root / "client_svc" / "gunicorn.conf.py",
            {
                "SERVER_URL": f"http://127.0.0.1:{server.port}",
                "TRUST_STORE": str(certs.ca),
                "SERVER_NAME": certs.server_name,
                **(env or {}),
            },
            log_dir,
            root=root,
        )
        stack.callback(client.stop)
        server.wait_ready()
        client.wait_ready()
        yield LabStack(server, client)


def _check_lab(stack: LabStack, case: Case) -> None:
    with HttpClient(stack.client.port) as client:
        full = client.call("POST", HANDSHAKE, {"cipher_suite": case.suite})
        resumed = client.call("POST", HANDSHAKE, {"resume": full["session_id"]})
    for answer, want_resumed in ((full, False), (resumed, True)):
        if (
            answer["cipher_suite"] != case.suite
            or answer["fingerprints_match"] is not True
            or answer["resumed"] is not want_resumed
        ):
            raise AnchorMismatch(f"client_svc's {case.label} handshake: unexpected answer")


def handshake_body(client: HttpClient, case: Case, resumed: bool) -> bytes:
    """The POST /handshake body for one case; for a resumed case, one full handshake on
    ``client`` first makes the session it resumes."""
    body = {"cipher_suite": case.suite}
    if resumed:
        session_id = client.call("POST", HANDSHAKE, body)["session_id"]
        return json.dumps({"resume": session_id}).encode()
    return json.dumps(body).encode()


def _lab_runner(stack: LabStack, case: Case, clients: int, resumed: bool, plan: Plan) -> Runner:
    def factory() -> tuple[Callable[[], int], Callable[[], None]]:
        client = HttpClient(stack.client.port)
        body = handshake_body(client, case, resumed)

        def handshake() -> int:
            status, data = client.request("POST", HANDSHAKE, body)
            if status != 200:
                raise RuntimeError(f"client_svc answered {status}: {data[:300]!r}")
            return 0

        return handshake, client.close

    def run(seconds: float) -> Run:
        factories: list[ClientFactory] = [factory] * clients
        return closed_loop(factories, seconds, plan.max_operations, stack.watch())

    return run


# -- OpenSSL: s_server + s_time ------------------------------------------------------------------

_S_TIME_COUNT = re.compile(rb"(\d+) connections in [\d.]+s;")


def _wait_listening(port: int, process: Process, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise RuntimeError(f"{process.name} exited at start-up:\n{process.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{process.name} is not listening after {timeout:.0f} s")


@contextmanager
def openssl_server(
    openssl: str, certs: Certificates, case: Case, log_dir: Path
) -> Iterator[tuple[Process, int]]:
    """``openssl s_server``: TLS 1.2, one cipher, no tickets (session-ID resumption, as the lab)."""
    port = free_port()
    process = Process(
        f"s_server-{case.key_exchange}",
        [
            openssl,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(certs.chain),
            "-key",
            str(certs.key),
            "-tls1_2",
            "-cipher",
            case.openssl_cipher,
            "-no_ticket",
            "-www",
            "-quiet",
        ],
        log_dir / f"s_server-{case.key_exchange}.log",
    )
    try:
        _wait_listening(port, process)
        yield process, port
    finally:
        process.stop()


def _s_time(openssl: str, port: int, certs: Certificates, case: Case, reuse: bool) -> list[str]:
    return [
        openssl,
        "s_time",
        "-connect",
        f"127.0.0.1:{port}",
        "-reuse" if reuse else "-new",
        "-time",
        "1",  # whole seconds only: a run lasts 1-2 s, timed here from start to exit
        "-tls1_2",
        "-cipher",
        case.openssl_cipher,
        "-CAfile",
        str(certs.ca),
        "-verify",
        "2",
    ]


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the s_time runs, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _openssl_runner(
    openssl: str,
    server: Process,
    port: int,
    certs: Certificates,
    case: Case,
    clients: int,
    reuse: bool,
) -> Runner:
    argv = _s_time(openssl, port, certs, case, reuse)

    def run(_seconds: float) -> Run:
        results: list[tuple[int, float, bytes]] = [(0, 0.0, b"")] * clients
        errors: list[BaseException] = []

        def one(index: int) -> None:
            try:
                started = time.perf_counter()
                done = subprocess.run(  # noqa: S603 - fixed argv, the system openssl
                    argv, capture_output=True, timeout=60, check=True, stdin=subprocess.DEVNULL
                )
                elapsed = time.perf_counter() - started
                match = _S_TIME_COUNT.search(done.stdout)
                if match is None:
                    raise RuntimeError(f"s_time printed no count: {done.stdout[-300:]!r}")
                results[index] = (int(match.group(1)), elapsed, done.stdout)
            except BaseException as exc:
                errors.append(exc)

        cpu_before = cpu_seconds(server.pid)
        children_before = _children_cpu()
        started = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        if reuse:
            for count, _, output in results:
                # s_time prints "r" for each resumed connection and "*" for a full one.
                progress = output.split(b"starting", 1)[-1]
                if progress.count(b"r") < 0.9 * count:
                    raise AnchorMismatch("openssl s_time -reuse did not resume its sessions")
        # Each s_time counts its own connections over its own lifetime (start-up included).
        rate = sum(count / seconds for count, seconds, _ in results)
        return Run(
            operations=round(rate * elapsed),
            seconds=elapsed,
            process_cpu={
                "s_server": cpu_seconds(server.pid) - cpu_before,
                "s_time": _children_cpu() - children_before,
            },
        )

    return run


# -- tlslite-ng ------------------------------------------------------------------------------


@contextmanager
def tlslite_server(certs: Certificates, case: Case, log_dir: Path) -> Iterator[tuple[Process, int]]:
    process = Process(
        f"tlslite-{case.key_exchange}",
        [
            sys.executable,
            "-m",
            "bench.tlslite_peer",
            "--chain",
            str(certs.chain),
            "--key",
            str(certs.key),
            "--key-exchange",
            case.key_exchange,
        ],
        log_dir / f"tlslite-{case.key_exchange}.log",
        stdout_pipe=True,
    )
    try:
        assert process.popen.stdout is not None
        line = process.popen.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"tlslite server did not start:\n{process.log_tail()}")
        port = int(line)
        _wait_listening(port, process)
        yield process, port
    finally:
        process.stop()


def _tlslite_handshake(port: int, settings: Any, session: Any) -> Any:
    from tlslite.api import TLSConnection  # type: ignore[import-untyped]

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        tls = TLSConnection(sock)
        tls.handshakeClientCert(settings=settings, session=session)
        # The socket closes with no close_notify exchange, on both ends (see tlslite_peer).
        return tls.session, tls.resumed


def _check_tlslite(port: int, case: Case) -> None:
    chosen = settings(case.key_exchange)
    session, resumed = _tlslite_handshake(port, chosen, None)
    if session.cipherSuite != SUITE_IDS[case.key_exchange] or resumed:
        raise AnchorMismatch(f"tlslite-ng negotiated suite {session.cipherSuite:#06x}")
    if not session.extendedMasterSecret:
        raise AnchorMismatch("tlslite-ng did not negotiate the extended master secret")
    _resumable_session(port, chosen)  # raises if the server never resumes


def _resumable_session(port: int, settings: Any) -> Any:
    """A session the tlslite-ng server has cached. Its server thread caches a session only after
    sending Finished, so a client that resumes at once can beat it there: try again, bounded."""
    session = _tlslite_handshake(port, settings, None)[0]
    for _ in range(50):
        fresh, resumed = _tlslite_handshake(port, settings, session)
        if resumed:
            return session
        session = fresh
        time.sleep(0.01)
    raise AnchorMismatch("the tlslite-ng server never resumed a session")


def _tlslite_runner(
    server: Process, port: int, case: Case, clients: int, resumed: bool, plan: Plan
) -> Runner:
    chosen = settings(case.key_exchange)

    def factory() -> tuple[Callable[[], int], Callable[[], None]]:
        session = _resumable_session(port, chosen) if resumed else None

        def handshake() -> int:
            _, was_resumed = _tlslite_handshake(port, chosen, session)
            if was_resumed != resumed:
                raise AnchorMismatch("tlslite-ng resumption changed during the run")
            return 0

        return handshake, lambda: None

    def run(seconds: float) -> Run:
        return closed_loop(
            [factory] * clients, seconds, plan.max_operations, {"tlslite": server.pid}
        )

    return run


# -- the section -----------------------------------------------------------------------------


def _tlslite_available() -> bool:
    try:
        import tlslite.api  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def _cpu_note(runs: list[Run], name: str) -> str:
    operations = sum(run.operations for run in runs)
    cpu = sum(run.process_cpu.get(name, 0.0) for run in runs)
    return f"{name} {1000 * cpu / operations:.2f} ms" if operations else f"{name} -"


def _lab_cell(runs: list[Run], rate: float) -> str:
    return f"{format_rate(rate, 'handshakes/s')} (load gen {cpu_share(runs):.0%} CPU)"


def _median_rate(runs: list[Run]) -> float:
    return statistics.median(run.rate for run in runs)


def _rows_for(
    case: Case, clients: int, runs: dict[str, list[Run]], missing: dict[str, str]
) -> list[Row]:
    """Full: lab vs OpenSSL and tlslite-ng. Resumed: the same, and against the lab's full rate."""
    rows: list[Row] = []
    plural = "client" if clients == 1 else "clients"
    for mode, lab_key, anchors in (
        (
            "full",
            "lab full",
            (
                ("openssl new", "OpenSSL s_server + s_time -new", FULL_VS_OPENSSL),
                ("tlslite full", "tlslite-ng TLSConnection, full", FULL_VS_TLSLITE),
            ),
        ),
        (
            "resumed",
            "lab resumed",
            (
                ("openssl reuse", "OpenSSL s_server + s_time -reuse", None),
                ("tlslite resumed", "tlslite-ng TLSConnection, session cache", None),
                ("lab full", "lab full handshake, same rounds", RESUMED_VS_FULL),
            ),
        ),
    ):
        name = f"{case.label} {mode} handshake, {clients} {plural}"
        lab = runs[lab_key]
        for anchor_key, anchor_name, target in anchors:
            anchor = runs.get(anchor_key)
            if not anchor:
                why = missing.get(anchor_key.split()[0], "not run")
                cell = _lab_cell(lab, _median_rate(lab))
                rows.append(Row(name, cell, f"{anchor_name} ({why})", "—", None, None, target))
                continue
            summary = summarize(lab, anchor)
            rows.append(
                Row(
                    name,
                    _lab_cell(lab, summary.lab_rate),
                    anchor_name,
                    format_rate(summary.anchor_rate, "handshakes/s"),
                    summary.ratio,
                    summary.spread,
                    target,
                )
            )
    return rows


#: Whose CPU time one handshake costs, both ends: the lab's two services (not the load
#: generator, which only posts JSON); s_server and s_time; tlslite-ng's server process and the
#: client threads in this process.
CPU_OF = {
    "lab": per_cpu_second(["server_svc", "client_svc"]),
    "openssl": per_cpu_second(["s_server", "s_time"]),
    "tlslite": per_cpu_second(["tlslite"], generator=True),
}


def _cpu_cell(rate: float) -> str:
    if not rate:
        return "—"
    return f"{format_rate(rate, 'handshakes/CPU-s')} ({1000 / rate:.2f} ms CPU each)"


def _cpu_rows(case: Case, runs: dict[str, list[Run]]) -> list[Row]:
    """Handshakes per CPU-second of both ends: steadier than wall-clock rates on a busy machine."""
    rows: list[Row] = []
    for mode, lab_key, anchors in (
        (
            "full",
            "lab full",
            (
                ("openssl new", "OpenSSL s_server + s_time -new"),
                ("tlslite full", "tlslite-ng, full"),
            ),
        ),
        (
            "resumed",
            "lab resumed",
            (
                ("openssl reuse", "OpenSSL s_server + s_time -reuse"),
                ("tlslite resumed", "tlslite-ng, session cache"),
                ("lab full", "lab full handshake, same rounds"),
            ),
        ),
    ):
        for anchor_key, anchor_name in anchors:
            if anchor_key not in runs:
                continue
            summary = summarize(
                runs[lab_key],
                runs[anchor_key],
                CPU_OF["lab"],
                CPU_OF[anchor_key.split()[0]],
            )
            rows.append(
                Row(
                    f"{case.label} {mode} handshake, CPU time of both ends, 1 client",
                    _cpu_cell(summary.lab_rate),
                    anchor_name,
                    _cpu_cell(summary.anchor_rate),
                    summary.ratio,
                    summary.spread,
                )
            )
    return rows


def run(budget: Budget, progress: Callable[[str], None] = lambda _: None) -> list[Row]:
    """Both suites, 1 and 4 clients, full and resumed: the lab and its anchors in the same rounds."""
    plan = plan_for(budget)
    quick = plan.rounds == 1
    openssl = shutil.which("openssl")
    tlslite = _tlslite_available()
    rows: list[Row] = []
    cpu_rows: list[Row] = []
    with ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-handshake-")))
        certs = stack.enter_context(certificates())
        for case in CASES:
            # Fresh services per suite: neither connection store comes near its cap, where every
            # insert scans the whole store (see docs/performance.md, Memory).
            with ExitStack() as per_case:
                progress(f"{case.label}: starting server_svc and client_svc under gunicorn")
                lab = per_case.enter_context(lab_stack(certs, log_dir))
                _check_lab(lab, case)
                openssl_port = tlslite_port = 0
                s_server = tls_server = None
                if openssl:
                    s_server, openssl_port = per_case.enter_context(
                        openssl_server(openssl, certs, case, log_dir)
                    )
                if tlslite:
                    tls_server, tlslite_port = per_case.enter_context(
                        tlslite_server(certs, case, log_dir)
                    )
                    _check_tlslite(tlslite_port, case)
                for clients in CLIENTS:
                    runners: dict[str, Runner] = {
                        "lab full": _lab_runner(lab, case, clients, False, plan),
                        "lab resumed": _lab_runner(lab, case, clients, True, plan),
                    }
                    # s_time runs whole seconds; --quick keeps it to one client to stay short.
                    skip_openssl = quick and clients > 1
                    if s_server is not None and not skip_openssl:
                        for key, reuse in (("openssl new", False), ("openssl reuse", True)):
                            runners[key] = _openssl_runner(
                                openssl or "openssl",
                                s_server,
                                openssl_port,
                                certs,
                                case,
                                clients,
                                reuse,
                            )
                    if tls_server is not None:
                        for key, resumed in (("tlslite full", False), ("tlslite resumed", True)):
                            runners[key] = _tlslite_runner(
                                tls_server, tlslite_port, case, clients, resumed, plan
                            )
                    progress(f"{case.label}, {clients} client(s): {len(runners)} runners")
                    runs = interleave(runners, plan, progress)
                    lab_full, lab_resumed = runs["lab full"], runs["lab resumed"]
                    progress(
                        f"{case.label}, {clients} client(s): CPU per handshake, full: "
                        f"{_cpu_note(lab_full, 'server_svc')}, {_cpu_note(lab_full, 'client_svc')}; "
                        f"resumed: {_cpu_note(lab_resumed, 'server_svc')}, "
                        f"{_cpu_note(lab_resumed, 'client_svc')}; "
                        + "; ".join(
                            _cpu_note(runs[key], proc)
                            for key, proc in (
                                ("openssl new", "s_server"),
                                ("openssl reuse", "s_server"),
                                ("tlslite full", "tlslite"),
                                ("tlslite resumed", "tlslite"),
                            )
                            if key in runs
                        )
                    )
                    missing = {
                        "openssl": "not run with --quick" if s_server else "openssl not found",
                        "tlslite": "tlslite-ng not installed",
                    }
                    rows += _rows_for(case, clients, runs, missing)
                    if clients == 1:
                        cpu_rows += _cpu_rows(case, runs)
    return rows + cpu_rows
