"""A real redis-server for the state-store tests: Debian's ``redis-server`` (scripts/test installs
it), on a free port of 127.0.0.1, in a temporary directory, configured as the scaled compose
stack runs it (AOF, fsync on every write). Stopped by its own PID only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import redis

from .served import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_WITHIN_S = 10.0


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start it (again: the AOF in ``directory`` brings back what was written)."""
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--protected-mode", "yes",
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_WITHIN_S
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def require_redis_server() -> None:
    """Go on only where redis-server is installed: skipped with a reason where it is not and
    LAB_SKIP_COMPOSE=1 (a laptop without Docker), else a failure saying how to install it."""
    if not Path(REDIS_SERVER).is_file():
        if os.environ.get("LAB_SKIP_COMPOSE") == "1":
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        pytest.fail("redis-server is not installed: apt-get install redis-server", pytrace=False)


@contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    """A redis-server for the block (:func:`require_redis_server` first)."""
    require_redis_server()
    server = RedisServer(free_port(), directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def unused_port() -> int:
    """A port where nothing listens (a Redis that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
