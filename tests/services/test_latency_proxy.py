"""The latency demo's proxy (lab_common.latency_proxy): it forwards every byte, in order, and
each way it waits the delay it was given."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

from helpers.served import free_port

DELAY_MS = 100


def echo_server() -> tuple[socket.socket, int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def test_the_proxy_forwards_every_byte_and_adds_its_delay_each_way():
    listener, target = echo_server()
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "lab_common.latency_proxy", "--listen", f"127.0.0.1:{port}",
         "--target", f"127.0.0.1:{target}", "--delay-ms", str(DELAY_MS)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert b"latency_proxy" in proxy.stdout.readline()  # listening
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            started = time.monotonic()
            client.sendall(b"ping")
            assert client.recv(16) == b"ping"
            # One chunk each way, each held DELAY_MS: the round trip takes at least both.
            assert time.monotonic() - started >= 2 * DELAY_MS / 1000 * 0.95
            payload = bytes(range(256)) * 4096  # 1 MiB, in many chunks
            client.sendall(payload)
            received = b""
            while len(received) < len(payload):
                received += client.recv(65536)
            assert received == payload
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        proxy.stdout.close()
        listener.close()
