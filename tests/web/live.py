"""client_svc and server_svc as real gunicorn processes on free loopback ports, for the browser tests.

Throwaway certificates come from ``python -m server_svc.certs`` in a temporary directory; the
processes are started here and stopped here, by their own PIDs. No Docker involved.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# Settings of either service: never inherited from the caller's environment, so a developer's
# REVEAL_SECRETS or SERVER_URL cannot change what the tests see.
_SERVICE_SETTINGS = {
    "SERVER_URL",
    "SERVER_NAME",
    "TRUST_STORE",
    "SSLKEYLOGFILE",
    "UPSTREAM_CONNECT_TIMEOUT",
    "UPSTREAM_READ_TIMEOUT",
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
# Straight to the loopback: a proxy from the environment must not see the lab's traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class LiveLab:
    client_url: str
    server_url: str
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["LOG_LEVEL"] = "warning"
    env.update(extra)
    return env


def _gunicorn(service: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
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
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_healthy(lab: LiveLab, url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}\n{lab.logs()}")
        try:
            with _OPENER.open(f"{url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"{url} did not answer /healthz within {STARTUP_TIMEOUT_S:.0f} s\n{lab.logs()}"
    )


def start_lab(
    workdir: Path, *, reveal_secrets: bool = False, settings: dict[str, str] | None = None
) -> LiveLab:
    """Certificates, then server_svc, then client_svc pointed at it; both answer /healthz.
    ``settings`` (environment variables) go to both services."""
    certs = workdir / "certs"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "server_svc.certs",
            "--server-dir",
            str(certs / "server"),
            "--trust-dir",
            str(certs / "trust"),
            "--server-name",
            "localhost",
            "--extra-name",
            "127.0.0.1",
        ],
        cwd=REPO_ROOT,
        env=_environment({}),
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_port, client_port = free_port(), free_port()
    reveal = "1" if reveal_secrets else "0"
    lab = LiveLab(
        client_url=f"http://127.0.0.1:{client_port}",
        server_url=f"http://127.0.0.1:{server_port}",
        log_dir=workdir,
    )
    try:
        server_env = _environment(
            {
                "SERVER_CERT_CHAIN": str(certs / "server" / "chain.pem"),
                "SERVER_KEY": str(certs / "server" / "server.key"),
                "REVEAL_SECRETS": reveal,
                **(settings or {}),
            }
        )
        server = _gunicorn("server_svc", server_port, server_env, workdir / "server_svc.log")
        lab.processes.append(server)
        _wait_healthy(lab, lab.server_url, server)
        client_env = _environment(
            {
                "SERVER_URL": lab.server_url,
                "SERVER_NAME": "localhost",
                "TRUST_STORE": str(certs / "trust" / "ca.pem"),
                "REVEAL_SECRETS": reveal,
                **(settings or {}),
            }
        )
        client = _gunicorn("client_svc", client_port, client_env, workdir / "client_svc.log")
        lab.processes.append(client)
        _wait_healthy(lab, lab.client_url, client)
    except BaseException:
        stop_lab(lab)
        raise
    return lab


def stop_lab(lab: LiveLab) -> None:
    """Stops the processes this module started, by PID: SIGINT (gunicorn's quick shutdown: no
    wait for the browser's idle keep-alive connections), then SIGKILL if they hang."""
    running = [process for process in lab.processes if process.poll() is None]
    for process in running:  # all at once: each takes about a second to wind down
        process.send_signal(signal.SIGINT)
    for process in running:
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
    lab.processes.clear()
