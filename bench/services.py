"""Real processes for the service sections: gunicorn-served apps, throwaway certificates, /proc.

Every process is started here in its own session, listens on 127.0.0.1 on a port picked at run
time, and is stopped by its PID (SIGTERM, then SIGKILL after a grace period) when its ``with``
block ends, on errors and Ctrl-C too. Nothing here talks to any other address.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "Certificates",
    "GunicornApp",
    "HttpClient",
    "Process",
    "certificates",
    "children",
    "cpu_seconds",
    "free_port",
    "gunicorn",
    "rss_bytes",
]

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


# -- /proc ---------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far (threads included), in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of one process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A throwaway demo CA and server certificate, as the compose ``certs`` step makes them."""

    chain: Path
    key: Path
    ca: Path
    server_name: str = "localhost"


@contextmanager
def certificates() -> Iterator[Certificates]:
    """Fresh certificates from ``python -m server_svc.certs`` in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bench-certs-") as tmp:
        server_dir, trust_dir = Path(tmp, "server"), Path(tmp, "trust")
        subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
            [
                sys.executable,
                "-m",
                "server_svc.certs",
                "--server-dir",
                str(server_dir),
                "--trust-dir",
                str(trust_dir),
                "--server-name",
                "localhost",
                "--extra-name",
                LOOPBACK,
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield Certificates(
            server_dir / "chain.pem", server_dir / "server.key", trust_dir / "ca.pem"
        )


# -- processes -------------------------------------------------------------------------------


class Process:
    """One child process in its own session (so a terminal's Ctrl-C reaches only us), stopped by PID."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        stdout_pipe: bool = False,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(  # noqa: S603 - argv is built by the benchmark itself
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self._descendants: dict[int, str] = {}  # PID -> start time, so a reused PID is left alone

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, limit: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-limit:].decode("utf-8", errors="replace")

    def remember_descendants(self) -> None:
        """Note the children now alive, so :meth:`stop` can kill them by PID if the parent dies."""
        for pid in children(self.pid):
            with suppress(OSError, IndexError):
                self._descendants[pid] = _stat_fields(pid)[19]

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; then any remembered child still alive."""
        if self.running():
            self.remember_descendants()
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace)
        for pid, started in self._descendants.items():
            try:
                fields = _stat_fields(pid)
                if fields[19] == started and fields[0] != "Z":
                    os.kill(pid, signal.SIGKILL)
            except (OSError, IndexError):
                pass  # already gone
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()


class GunicornApp(Process):
    """A Flask app served by gunicorn with a service's gunicorn.conf.py, on a free loopback port.

    ``root`` is the source tree it runs from (this checkout unless another one is given, as
    ``python -m bench.compare`` does for an older revision): its working directory and the
    first entry of its import path.
    """

    def __init__(
        self,
        name: str,
        app: str,
        conf: Path,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        root: Path = ROOT,
    ) -> None:
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(conf),
            "--bind",
            f"{LOOPBACK}:{self.port}",
            app,
        ]
        full_env = {**os.environ, **env}
        if root != ROOT:
            full_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(root), full_env.get("PYTHONPATH", "")) if p
            )
        super().__init__(name, argv, log_dir / f"{name}.log", env=full_env, cwd=root)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until GET /healthz answers 200 and the one worker process is known."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_tail()}")
            try:
                with HttpClient(self.port, timeout=2.0) as client:
                    status, _ = client.request("GET", "/healthz")
                if status == 200 and children(self.pid):
                    self.remember_descendants()
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} did not become ready in {timeout:.0f} s:\n{self.log_tail()}"
        )

    def worker_pid(self) -> int:
        """The gunicorn worker: the master's only child (the services run one worker)."""
        workers = children(self.pid)
        if len(workers) != 1:
            raise RuntimeError(f"{self.name}: expected one gunicorn worker, found {workers}")
        return workers[0]

    def health(self) -> dict[str, Any]:
        with HttpClient(self.port) as client:
            return client.call("GET", "/healthz")


@contextmanager
def gunicorn(
    name: str, app: str, conf: Path, env: Mapping[str, str], log_dir: Path
) -> Iterator[GunicornApp]:
    """Start an app under gunicorn, wait for it, and stop it by PID when the block ends."""
    for attempt in range(2):  # a free port can be taken between the probe and gunicorn's bind
        process = GunicornApp(name, app, conf, env, log_dir)
        try:
            process.wait_ready()
        except RuntimeError:
            process.stop()
            if attempt == 1 or "Address already in use" not in process.log_tail():
                raise
            continue
        try:
            yield process
        finally:
            process.stop()
        return


# -- HTTP --------------------------------------------------------------------------------------


class HttpClient:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1 (http.client): cheap enough to load with."""

    def __init__(self, port: int, *, timeout: float = 60.0) -> None:
        self.connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        all_headers = {"Content-Type": content_type} if body is not None else {}
        all_headers.update(headers or {})
        self.connection.request(method, path, body=body, headers=all_headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def call(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        """A JSON request that must succeed; the decoded JSON answer."""
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        status, data = self.request(method, path, payload)
        if status != 200:
            raise RuntimeError(f"{method} {path} answered {status}: {data[:300]!r}")
        answer: dict[str, Any] = json.loads(data)
        return answer
