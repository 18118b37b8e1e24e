"""The fleet's headers: every answer names its replica (Lab-Replica), and client_svc names
the connection of each call to server_svc (Lab-Connection)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from client_svc.upstream import HttpTransport
from lab_common.contract import (
    CONNECTION_HEADER,
    HANDSHAKE,
    HEALTH,
    HELLO,
    MESSAGE,
    REPLICA_HEADER,
)
from lab_common.gunicorn_worker import json_error_answer

REPLICA = socket.gethostname()


def test_answers_of_both_services_name_their_replica(client, server):
    answers = [
        client.get(HEALTH),
        server.get(HEALTH),
        client.post(HANDSHAKE, json={}),
        client.get("/no-such-endpoint"),  # an error answer
        server.post(HEALTH),  # method not allowed
        server.get(HEALTH, headers={"Host": "rebind.example"}),  # refused before Flask routes
    ]
    assert [a.headers.get(REPLICA_HEADER) for a in answers] == [REPLICA] * len(answers)
    assert answers[-1].status_code == 421


def test_gunicorns_own_error_answers_name_their_replica_too():
    head = json_error_answer(400, "Bad Request", "broken request line").split(b"\r\n\r\n")[0]
    assert f"{REPLICA_HEADER}: {REPLICA}".encode() in head.split(b"\r\n")


def test_client_svc_names_the_connection_of_each_call_to_server_svc():
    """HAProxy keeps a connection's requests on one replica by this header (haproxy.cfg)."""
    seen: list[str | None] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get(CONNECTION_HEADER))
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Recorder) as listener:
        worker = threading.Thread(target=listener.serve_forever, daemon=True)
        worker.start()
        try:
            transport = HttpTransport(
                f"http://127.0.0.1:{listener.server_address[1]}",
                connect_timeout=2,
                read_timeout=5,
                max_response_bytes=1024,
            )
            transport.request("POST", HELLO, {"client_random": "00"})
            transport.request("POST", MESSAGE, {"connection_id": "ab" * 16, "record": ""})
        finally:
            listener.shutdown()
    assert seen == [None, "ab" * 16]


def test_every_trace_step_names_the_replica_that_computed_it(client):
    answer = client.post(HANDSHAKE, json={"key_exchange": "ecdhe"}).get_json()
    steps = answer["trace"]
    assert {step["actor"] for step in steps} == {"client", "server"}
    assert {step["replica"] for step in steps} == {REPLICA}
