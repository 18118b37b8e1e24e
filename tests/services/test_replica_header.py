"""Every answer of both services names the replica that made it (Lab-Replica)."""

from __future__ import annotations

import socket

from lab_common.contract import HANDSHAKE, HEALTH, REPLICA_HEADER
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
