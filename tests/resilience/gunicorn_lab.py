"""server_svc and client_svc as real gunicorn processes on free 127.0.0.1 ports, each with its
own settings, for tests that need the real server (its socket handling, its worker's memory).

Throwaway certificates come from ``python -m server_svc.certs``; a process is started here and
stopped here, by its own PID. Settings never come from the caller's environment.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
#: Settings of either service: dropped from the inherited environment.
_SERVICE_SETTINGS = {
    "SERVER_URL",
    "MITM_SERVER_URL",
    "SERVER_NAME",
    "TRUST_STORE",
    "SSLKEYLOGFILE",
    "UPSTREAM_CONNECT_TIMEOUT",
    "UPSTREAM_READ_TIMEOUT",
    "UPSTREAM_MAX_RESPONSE_BYTES",
    "SERVER_MAX_BODY_BYTES",
    "AUTO_RECONNECT",
    "SERVER_CERT_CHAIN",
    "SERVER_KEY",
    "MAX_BODY_BYTES",
    "MAX_CONTENT_LENGTH",
    "CONNECTION_TTL",
    "HALF_OPEN_TTL",
    "MAX_CONNECTIONS",
    "SESSION_TTL",
    "MAX_SESSIONS",
    "REVEAL_SECRETS",
    "ALLOWED_HOSTS",
    "LOG_LEVEL",
    "PORT",
    "GUNICORN_BIND",
    "GUNICORN_THREADS",
    "GUNICORN_TIMEOUT",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Certificates:
    chain: Path
    key: Path
    trust: Path


def make_certificates(workdir: Path) -> Certificates:
    """A demo CA and a certificate for "server" (the client's default SERVER_NAME)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "server_svc.certs",
            "--server-dir",
            str(workdir / "server"),
            "--trust-dir",
            str(workdir / "trust"),
            "--server-name",
            "server",
        ],
        cwd=REPO_ROOT,
        env=_environment({}),
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Certificates(
        workdir / "server" / "chain.pem",
        workdir / "server" / "server.key",
        workdir / "trust" / "ca.pem",
    )


def _environment(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["LOG_LEVEL"] = "warning"
    env.update(settings)
    return env


@dataclass
class Service:
    """One gunicorn master (and its one worker) serving ``url``."""

    name: str
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.logs()}")
            try:
                status, _ = call(self.port, "GET", "/healthz", timeout=1)
                if status == 200 and self.worker_pid():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {STARTUP_TIMEOUT_S:.0f} s: {self.logs()}")

    def worker_pid(self) -> int | None:
        """The worker process's PID (gunicorn runs one, as a child of the master)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = children.read_text().split()
        except OSError:
            return None
        return int(pids[0]) if pids else None

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGINT (gunicorn's quick shutdown), then SIGKILL if it hangs; by this PID only."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)


def launch(service: str, workdir: Path, settings: dict[str, str]) -> Service:
    """Start ``service`` ("server_svc" or "client_svc") under gunicorn; call wait_ready()."""
    port = free_port()
    log = workdir / f"{service}-{port}.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        f"{service}/gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        f"{service}:create_app()",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=_environment(settings), stdout=out, stderr=subprocess.STDOUT
        )
    return Service(service, f"http://127.0.0.1:{port}", port, process, log)


def server_settings(certificates: Certificates, **settings: str) -> dict[str, str]:
    return {
        "SERVER_CERT_CHAIN": str(certificates.chain),
        "SERVER_KEY": str(certificates.key),
        **settings,
    }


def client_settings(
    certificates: Certificates, server_port: int, **settings: str
) -> dict[str, str]:
    return {
        "SERVER_URL": f"http://127.0.0.1:{server_port}",
        "SERVER_NAME": "server",
        "TRUST_STORE": str(certificates.trust),
        **settings,
    }


def start_all(services: list[Service]) -> None:
    """Wait until every one answers /healthz; on failure stop them all and raise."""
    try:
        for service in services:
            service.wait_ready()
    except BaseException:
        for service in services:
            service.stop()
        raise


def call(
    port: int, method: str, path: str, body: Any = None, *, timeout: float = 60.0
) -> tuple[int, Any]:
    """One request to 127.0.0.1:<port>; JSON bodies are sent as UTF-8 (not \\u escapes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    return response.status, json.loads(answer) if answer else None


def memory_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory figure in KiB: VmRSS (now) or VmHWM (the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")
