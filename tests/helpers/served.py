"""server_svc and client_svc under a real gunicorn on free 127.0.0.1 ports: the one harness for
the tests that need the real server (its socket handling, its worker's memory and CPU time, the
browser's page). No Docker involved.

Each service runs with its own gunicorn settings file; settings never come from the caller's
environment, only from the test. :func:`start_lab` starts both, client_svc pointed at server_svc;
:func:`launch` and :func:`running` put together any other set (several of one service, a hostile
peer in between). A process is started here and stopped here, by its own PID, never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from client_svc.config import ClientSettings
from kdf_lib import pki
from lab_common.contract import HEALTH
from server_svc.config import ServerSettings

from .rawhttp import LiveHttp

REPO_ROOT = Path(__file__).resolve().parents[2]
START_WITHIN_S = 30.0
STOP_WITHIN_S = 10.0
#: Settings of either service (and of its gunicorn settings file): dropped from the inherited
#: environment, so a developer's REVEAL_SECRETS or SERVER_URL cannot change what the tests see.
_SETTINGS = {
    *ServerSettings.variables(),
    *ClientSettings.variables(),
    "PORT",
    "GUNICORN_BIND",
    "GUNICORN_THREADS",
    "GUNICORN_TIMEOUT",
    "FORWARDED_ALLOW_IPS",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(settings: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["LOG_LEVEL"] = "warning"
    env.update(settings)
    return env


# -- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """server_svc's chain and key and the CA client_svc trusts, as files; ``server_name`` is
    the name the server's certificate is for (client_svc's SERVER_NAME). The ECDSA chain and
    key, when there, make the server hold both certificates, as the certs step's do."""

    chain: Path
    key: Path
    trust: Path
    server_name: str
    ecdsa_chain: Path | None = None
    ecdsa_key: Path | None = None


def issue_certificates(
    directory: Path, server_name: str = "server", *extra_names: str
) -> Certificates:
    """A throwaway demo CA and server certificate from ``python -m server_svc.certs``."""
    command = [sys.executable, "-m", "server_svc.certs", "--server-name", server_name]
    command += ["--server-dir", str(directory / "server"), "--trust-dir", str(directory / "trust")]
    for name in extra_names:
        command += ["--extra-name", name]
    subprocess.run(
        command, cwd=REPO_ROOT, env=_environment({}), check=True, capture_output=True, timeout=60
    )
    server, trust = directory / "server", directory / "trust"
    return Certificates(
        server / "chain.pem",
        server / "server.key",
        trust / "ca.pem",
        server_name,
        server / "ecdsa-chain.pem",
        server / "ecdsa-server.key",
    )


def write_certificates(
    directory: Path, ca: pki.Issued, leaf: pki.Issued, server_name: str = "server"
) -> Certificates:
    """An identity the test already has (such as the in-memory pair's) as files."""
    directory.mkdir(parents=True, exist_ok=True)
    written = Certificates(
        directory / "chain.pem", directory / "server.key", directory / "ca.pem", server_name
    )
    written.chain.write_bytes(leaf.certificate_pem())
    written.key.write_bytes(leaf.private_key_pem())
    written.trust.write_bytes(ca.certificate_pem())
    return written


def server_settings(certificates: Certificates, **settings: str) -> dict[str, str]:
    ecdsa = {}
    if certificates.ecdsa_chain is not None and certificates.ecdsa_key is not None:
        ecdsa = {
            "SERVER_ECDSA_CERT_CHAIN": str(certificates.ecdsa_chain),
            "SERVER_ECDSA_KEY": str(certificates.ecdsa_key),
        }
    return {
        "SERVER_CERT_CHAIN": str(certificates.chain),
        "SERVER_KEY": str(certificates.key),
        **ecdsa,
        **settings,
    }


def client_settings(
    certificates: Certificates, server_port: int, **settings: str
) -> dict[str, str]:
    """client_svc pointed at 127.0.0.1:``server_port``, trusting ``certificates``' CA."""
    return {
        "SERVER_URL": f"http://127.0.0.1:{server_port}",
        "SERVER_NAME": certificates.server_name,
        "TRUST_STORE": str(certificates.trust),
        **settings,
    }


# -- processes -------------------------------------------------------------------------------


@dataclass
class Service:
    """One gunicorn master (and its one worker: gunicorn_settings.workers is 1)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self) -> LiveHttp:
        """A stand-in for Flask's test client that talks to this service."""
        return LiveHttp(self.address)

    def worker_pid(self) -> int:
        workers = _children(self.process.pid)
        assert len(workers) == 1, f"{self.name}: expected one worker, found {workers}"
        return workers[0]

    def logs(self) -> str:
        """The end of what gunicorn and the service wrote, under the log file's name."""
        return f"--- {self.log.name}\n{self.log.read_text(errors='replace')[-4000:]}"

    def wait_ready(self) -> None:
        """Until the worker answers /healthz; raises with the log if the master exits first."""
        deadline = time.monotonic() + START_WITHIN_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}\n{self.logs()}"
                )
            with suppress(OSError):
                answer = LiveHttp(self.address, timeout=1).get(HEALTH)
                if answer.status_code == 200 and _children(self.process.pid):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {START_WITHIN_S:.0f} s\n{self.logs()}")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            found.extend(int(child) for child in (task / "children").read_text().split())
    return found


def launch(name: str, workdir: Path, settings: Mapping[str, str]) -> Service:
    """Start ``name`` ("server_svc" or "client_svc") under gunicorn with ``settings`` and its
    log in ``workdir``; it is not ready yet (see :func:`running`)."""
    port = free_port()
    log = workdir / f"{name}-{port}.log"
    command = [sys.executable, "-m", "gunicorn", "-c", f"{name}/gunicorn.conf.py"]
    command += ["--bind", f"127.0.0.1:{port}", f"{name}:create_app()"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=_environment(settings),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Service(name, port, process, log)


def start_all(services: list[Service]) -> None:
    """Wait until every one is ready; if one is not, stop them all and raise."""
    try:
        for service in services:
            service.wait_ready()
    except BaseException:
        stop_all(services)
        raise


def stop_all(services: list[Service]) -> None:
    """SIGINT (gunicorn's quick shutdown: no wait for idle keep-alive connections) to each that
    still runs, all at once, then SIGKILL to any that hangs; by these PIDs only."""
    alive = [service.process for service in services if service.process.poll() is None]
    for process in alive:
        process.send_signal(signal.SIGINT)
    for process in alive:
        try:
            process.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_WITHIN_S)


@contextmanager
def running(*services: Service) -> Iterator[None]:
    """Launched services, ready inside the block and stopped after it."""
    start_all(list(services))
    try:
        yield
    finally:
        stop_all(list(services))


# -- both services ---------------------------------------------------------------------------


@dataclass
class LiveLab:
    """server_svc, and client_svc pointed at it; their logs are in ``log_dir``."""

    server: Service
    client: Service
    log_dir: Path

    @property
    def client_url(self) -> str:
        return self.client.url

    @property
    def server_url(self) -> str:
        return self.server.url

    def logs(self) -> str:
        """The end of each service's log, for a failure's message."""
        return "\n".join(service.logs() for service in (self.server, self.client))

    def log_lines(self) -> list[str]:
        """Every line both services have written so far, to search or parse."""
        return [
            line
            for service in (self.server, self.client)
            for line in service.log.read_text(errors="replace").splitlines()
        ]


def start_lab(
    workdir: Path,
    *,
    certificates: Certificates | None = None,
    reveal_secrets: bool = False,
    settings: Mapping[str, str] | None = None,
) -> LiveLab:
    """Both services, answering /healthz. Without ``certificates``, throwaway ones for
    "localhost" (and 127.0.0.1) in ``workdir``; ``settings`` go to both services."""
    if certificates is None:
        certificates = issue_certificates(workdir / "certs", "localhost", "127.0.0.1")
    common = {"REVEAL_SECRETS": "1" if reveal_secrets else "0", **(settings or {})}
    server = launch("server_svc", workdir, server_settings(certificates, **common))
    try:
        client = launch("client_svc", workdir, client_settings(certificates, server.port, **common))
    except BaseException:
        stop_all([server])
        raise
    start_all([server, client])
    return LiveLab(server, client, workdir)


def stop_lab(lab: LiveLab) -> None:
    stop_all([lab.server, lab.client])


# -- what a worker uses ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads, dead ones included) that process ``pid`` has used.

    Linux lets a process read another's CPU clock (clock_getcpuclockid); /proc/<pid>/stat
    (10 ms ticks) is the fallback.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # CPUCLOCK_SCHED of the whole process
    except OSError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory figure in KiB: VmRSS (now) or VmHWM (the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")
