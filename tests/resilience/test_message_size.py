"""A message too large for server_svc is "not delivered", not "outcome unknown".

client_svc accepts a plaintext whose forwarded request (records in base64, in JSON) is larger
than server_svc's body limit, which server_svc refuses from its headers alone. client_svc knows
that limit (SERVER_MAX_BODY_BYTES) and refuses such a message before it seals it: 413
``body_too_large``, ``delivery: not_delivered``, and the connection goes on as if nothing had
happened. When its idea of the limit is wrong, server_svc's own 413 says the same (also when
server_svc answers and closes while the body is still being written, which client_svc sees as
a broken pipe), but then the record's sequence number is spent and the connection is closed.
Everything runs under real gunicorn processes; the misbehaving peer is the test's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helpers.rawhttp import call_json
from helpers.served import (
    Service,
    client_settings,
    issue_certificates,
    launch,
    running,
    server_settings,
)

from client_svc.upstream import HttpTransport
from lab_common.contract import HANDSHAKE, HEALTH, MESSAGE, SESSION, path
from lab_common.settings import MAX_BODY_LIMIT

from .hostile_peer import HostilePeer, refused_from_headers

SMALL_LIMIT = 65536
#: The issue's plaintext: 4,194,000 bytes of UTF-8, within client_svc's default body limit,
#: 5.6 MB once sealed and base64-encoded: over server_svc's default limit (4 MiB).
EUROS = "€" * 1_398_000


@dataclass
class Lab:
    server_small: Service  # MAX_BODY_BYTES=65536
    server_default: Service
    aware: Service  # -> server_small, knows its limit
    unaware: Service  # -> server_small, believes it takes 8 MiB
    default: Service  # -> server_default, every setting at its default
    hostile: Service  # -> peer -> server_small; believes 8 MiB
    peer: HostilePeer


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("sizes")
    certificates = issue_certificates(workdir)
    small = launch(
        "server_svc", workdir, server_settings(certificates, MAX_BODY_BYTES=str(SMALL_LIMIT))
    )
    default_server = launch("server_svc", workdir, server_settings(certificates))
    largest_limit = str(MAX_BODY_LIMIT)

    def client(port: int, **settings: str) -> Service:
        return launch("client_svc", workdir, client_settings(certificates, port, **settings))

    with HostilePeer(upstream_port=small.port) as peer:
        lab = Lab(
            server_small=small,
            server_default=default_server,
            aware=client(
                small.port, SERVER_MAX_BODY_BYTES=str(SMALL_LIMIT), MAX_BODY_BYTES=str(1 << 20)
            ),
            unaware=client(
                small.port, SERVER_MAX_BODY_BYTES=largest_limit, MAX_BODY_BYTES=largest_limit
            ),
            default=client(default_server.port),
            hostile=client(
                peer.port, SERVER_MAX_BODY_BYTES=largest_limit, MAX_BODY_BYTES=largest_limit
            ),
            peer=peer,
        )
        services = [small, default_server, lab.aware, lab.unaware, lab.default, lab.hostile]
        with running(*services):
            yield lab


def _handshake(client: Service, **body: Any) -> str:
    status, answer = call_json(client.port, "POST", HANDSHAKE, body)
    assert status == 200, answer
    return str(answer["connection_id"])


def _send(client: Service, connection_id: str, plaintext: str) -> tuple[int, Any]:
    body = {"plaintext": plaintext, "connection_id": connection_id}
    return call_json(client.port, "POST", MESSAGE, body)


def _sequence_numbers(service: Service, connection_id: str) -> tuple[dict[str, int], int]:
    status, view = call_json(service.port, "GET", path(SESSION, connection_id))
    assert status == 200, view
    return view["sequence_numbers"], view["messages"]


def _assert_delivered(
    client: Service, connection_id: str, plaintext: str, seqs: tuple[int, int]
) -> tuple[int, int]:
    """Send ``plaintext``; its records and the echo's start at ``seqs`` (write, read). Returns
    where the next message's start."""
    status, answer = _send(client, connection_id, plaintext)
    assert status == 200, answer
    sent, reply = answer["sent"], answer["reply"]
    assert (sent["seq"], reply["seq"]) == seqs
    assert reply["plaintext"].endswith(f": {plaintext}")  # server_svc's echo
    return sent["seq"] + sent["records"], reply["seq"] + reply["records"]


@pytest.mark.parametrize(
    ("suite", "encrypt_then_mac"),
    [
        ("TLS_RSA_WITH_AES_256_CBC_SHA256", True),
        ("TLS_RSA_WITH_AES_128_CBC_SHA", False),
        ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", True),
        ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", True),
    ],
)
def test_a_message_over_the_servers_limit_is_refused_before_it_is_sent(
    lab: Lab, suite: str, encrypt_then_mac: bool
) -> None:
    client = lab.aware
    connection_id = _handshake(client, cipher_suite=suite, encrypt_then_mac=encrypt_then_mac)
    seqs = _assert_delivered(client, connection_id, "first", (1, 1))

    status, answer = _send(client, connection_id, "a" * 60_000)  # 80 KB as forwarded
    error = answer["error"]
    assert (status, error["code"]) == (413, "body_too_large")
    assert error["delivery"] == "not_delivered" and error["connection_id"] == connection_id
    assert "peer" not in error  # client_svc's own refusal: nothing was sent
    # The refusal names the longest plaintext that fits: exactly that much goes through
    # server_svc's limit, one byte more does not (so the size check is exact, in every suite).
    match = re.search(r"At most (\d+) bytes", error["message"])
    assert match, error["message"]
    fits = int(match[1])
    status, answer = _send(client, connection_id, "a" * (fits + 1))
    assert (status, answer["error"]["code"]) == (413, "body_too_large")
    seqs = _assert_delivered(client, connection_id, "a" * fits, seqs)

    # No refusal spent a sequence number on either side, so the connection goes on.
    write, read = _assert_delivered(client, connection_id, "after", seqs)
    client_seq, _ = _sequence_numbers(client, connection_id)
    server_seq, processed = _sequence_numbers(lab.server_small, connection_id)
    assert client_seq == {"write": write, "read": read}
    assert server_seq == {"write": read, "read": write}
    assert processed == 3


def test_the_issues_euro_message_at_the_default_limits_is_not_delivered(lab: Lab) -> None:
    """1,398,000 x "€": client_svc takes it, server_svc never would. Today: 504
    outcome_unknown after the connection breaks under the write."""
    client = lab.default
    connection_id = _handshake(client)
    status, answer = _send(client, connection_id, EUROS)
    error = answer["error"]
    assert (status, error["code"], error["delivery"]) == (413, "body_too_large", "not_delivered")
    assert "was not sent" in error["message"]
    _assert_delivered(client, connection_id, "still here", (1, 1))
    _, processed = _sequence_numbers(lab.server_default, connection_id)
    assert processed == 1


@pytest.mark.parametrize(
    "plaintext",
    ["a" * 100_000, EUROS],
    ids=["read whole, then refused", "refused while the body is still being written"],
)
def test_server_svcs_own_413_is_not_delivered(lab: Lab, plaintext: str) -> None:
    """client_svc believes server_svc takes 8 MiB; it takes 64 KiB. 135 KB of request is read
    and refused; 5.6 MB is refused from the headers and the connection closed under the
    write (a broken pipe), and client_svc reads the 413 that is waiting for it."""
    client = lab.unaware
    connection_id = _handshake(client)
    status, answer = _send(client, connection_id, plaintext)
    error = answer["error"]
    assert (status, error["code"], error["delivery"]) == (413, "body_too_large", "not_delivered")
    assert error["peer"] == "server"
    assert "SERVER_MAX_BODY_BYTES" in error["message"]
    _, processed = _sequence_numbers(lab.server_small, connection_id)
    assert processed == 0
    # The record's sequence number is spent on the client: the connection is closed ...
    status, after = _send(client, connection_id, "next")
    assert (status, after["error"]["code"]) == (409, "unexpected_message")
    assert "body_too_large" in after["error"]["message"]
    # ... and client_svc itself is fine: a new connection works.
    _assert_delivered(client, _handshake(client), "next", (1, 1))


def test_a_413_from_the_headers_then_a_reset_is_read_not_guessed(lab: Lab) -> None:
    """The peer reads only the request's head, answers 413 and closes with 5.6 MB unread: the
    kernel resets the connection while client_svc is still writing."""
    client = lab.hostile
    connection_id = _handshake(client)
    lab.peer.behaviours[MESSAGE] = refused_from_headers
    try:
        status, answer = _send(client, connection_id, EUROS)
    finally:
        lab.peer.behaviours.clear()
    error = answer["error"]
    assert (status, error["code"], error["delivery"]) == (413, "body_too_large", "not_delivered")
    assert lab.peer.requests.count(MESSAGE) == 1
    status, after = _send(client, connection_id, "next")
    assert (status, after["error"]["code"]) == (409, "unexpected_message")
    _assert_delivered(client, _handshake(client), "next", (1, 1))


def test_after_a_413_the_next_call_gets_a_fresh_connection(lab: Lab) -> None:
    """gunicorn answers the 413 with "keep-alive", then closes the connection with the body
    unread: a request sent on it meanwhile would break, and a message there would become an
    unknown outcome. client_svc's transport therefore never reuses a connection after a 413."""
    transport = HttpTransport(lab.server_small.url, connect_timeout=2, read_timeout=10)
    try:
        for _ in range(3):
            body = {"connection_id": "0" * 32, "record": "A" * 100_000}
            status, _ = transport.request("POST", MESSAGE, body)
            assert status == 413
            status, _ = transport.request("GET", HEALTH, None)
            assert status == 200
    finally:
        transport.close()
