"""Concurrent POST /message calls on one client_svc connection are serialized.

Each record's sequence number is implicit (RFC 5246 §6.1): the server opens records strictly in
order. If two threads could seal and send on one connection at once, a record with sequence
number n+1 could reach the server before record n, and the server would refuse it as
bad_record_mac, ending the connection. client_svc holds a per-connection lock around seal, send
and open, so concurrent callers all succeed, one after the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.transport import FlaskTransport

from lab_common.contract import HANDSHAKE, MESSAGE, SESSION, path

THREADS = 8
MESSAGES_PER_THREAD = 5


def slow_first_message(transport: FlaskTransport, delay: float) -> None:
    """Hold the first /message on the wire for ``delay`` seconds: without the per-connection
    lock, the records sealed meanwhile by other threads would overtake it."""
    first = threading.Event()

    def hold(path: str, body: dict[str, Any]) -> None:
        if path == MESSAGE and not first.is_set():
            first.set()
            time.sleep(delay)

    transport.before.append(hold)


@pytest.mark.parametrize("key_exchange", ["rsa", "ecdhe"])
def test_racing_messages_on_one_connection_all_succeed_in_sequence(
    make_client: Callable[..., FlaskClient],
    transport: FlaskTransport,
    server_app: Flask,
    key_exchange: str,
) -> None:
    setup = make_client()
    connection_id = setup.post(HANDSHAKE, json={"key_exchange": key_exchange}).get_json()[
        "connection_id"
    ]
    app = setup.application
    slow_first_message(transport, delay=0.2)
    start = threading.Barrier(THREADS, timeout=10)

    def send_all(thread: int) -> list[tuple[str, int, dict[str, Any]]]:
        client = app.test_client()  # one test client per thread, one client_svc app for all
        start.wait()
        results = []
        for number in range(MESSAGES_PER_THREAD):
            text = f"thread {thread} message {number}"
            response = client.post(
                MESSAGE, json={"plaintext": text, "connection_id": connection_id}
            )
            results.append((text, response.status_code, response.get_json()))
        return results

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = [r for batch in pool.map(send_all, range(THREADS), timeout=60) for r in batch]

    total = THREADS * MESSAGES_PER_THREAD
    assert [status for _, status, _ in outcomes] == [200] * total, [
        answer for _, status, answer in outcomes if status != 200
    ]
    sent = sorted(answer["sent"]["seq"] for _, _, answer in outcomes)
    # Distinct and consecutive: 1..total (the Finished records used 0).
    assert sent == list(range(1, total + 1))
    for text, _, answer in outcomes:
        # Each caller got the reply to its own message, opened at the matching sequence number.
        assert answer["reply"]["seq"] == answer["sent"]["seq"]
        seq = answer["sent"]["seq"]
        assert answer["reply"]["plaintext"].endswith(f"in records {seq}..{seq}: {text}")
    server_view = server_app.test_client().get(path(SESSION, connection_id)).get_json()
    assert server_view["sequence_numbers"] == {"read": total + 1, "write": total + 1}
    assert server_view["messages"] == total and server_view["state"] == "established"


def test_different_connections_do_not_wait_for_each_other(
    make_client: Callable[..., FlaskClient], transport: FlaskTransport
) -> None:
    # The lock is per connection: a message held on the wire for one connection does not
    # delay another connection's message.
    client = make_client()
    slow = client.post(HANDSHAKE, json={}).get_json()["connection_id"]
    fast = client.post(HANDSHAKE, json={}).get_json()["connection_id"]
    held = threading.Event()
    release = threading.Event()

    def hold(path: str, body: dict[str, Any]) -> None:
        if path == MESSAGE and body["connection_id"] == slow:
            held.set()
            release.wait(10)

    transport.before.append(hold)
    app = client.application
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            lambda: app.test_client().post(
                MESSAGE, json={"plaintext": "slow", "connection_id": slow}
            )
        )
        assert held.wait(10)
        started = time.monotonic()
        quick = app.test_client().post(MESSAGE, json={"plaintext": "fast", "connection_id": fast})
        elapsed = time.monotonic() - started
        release.set()
        assert pending.result(timeout=10).status_code == 200
    assert quick.status_code == 200 and elapsed < 2.0
