"""Memory stays bounded under a stream of handshakes and messages: nothing outside the stores
(which are capped) keeps growing.

Each service keeps a connection for CONNECTION_TTL after its last use, up to MAX_CONNECTIONS,
so under load their memory grows with the connections they hold (docs/resilience.md has the
measured cost per connection). With small caps the stores fill early; from then on every new
connection evicts an old one, and any further growth would be a leak.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from helpers.transport import FlaskTransport

from lab_common.contract import HANDSHAKE, MESSAGE

CAP = 16
WARM_UP_CYCLES = 60
MEASURED_CYCLES = 240
#: Far below what 240 retained cycles would take (each holds tens of KB on each side).
ALLOWED_GROWTH_BYTES = 512 * 1024


def cycle(client: FlaskClient, number: int) -> None:
    kind = ("rsa", "ecdhe")[number % 2]
    result = client.post(HANDSHAKE, json={"key_exchange": kind})
    assert result.status_code == 200, result.get_json()
    if number % 3 == 0:
        session_id = result.get_json()["session_id"]
        assert client.post(HANDSHAKE, json={"resume": session_id}).status_code == 200
    answer = client.post(MESSAGE, json={"plaintext": f"message {number}"})
    assert answer.status_code == 200


def test_memory_is_flat_once_the_capped_stores_are_full(
    make_server: Callable[..., Flask],
    transport: FlaskTransport,
    make_client: Callable[..., FlaskClient],
) -> None:
    caps = {"MAX_CONNECTIONS": CAP, "MAX_SESSIONS": CAP, "LOG_LEVEL": "WARNING"}
    server_app = make_server(**caps)
    transport.restart(server_app)
    client = make_client(**caps)
    client_store = client.application.extensions["client_service"].store
    server_store = server_app.extensions["server_service"].store
    tracemalloc.start()  # before the warm-up: what the stores hold then is traced too
    try:
        for number in range(WARM_UP_CYCLES):
            cycle(client, number)
        assert client_store.connection_count() == CAP and server_store.connection_count() == CAP
        transport.received.clear()  # the transport's record of requests is the test's, not a service's
        transport.record = False
        gc.collect()
        before = tracemalloc.take_snapshot()
        for number in range(WARM_UP_CYCLES, WARM_UP_CYCLES + MEASURED_CYCLES):
            cycle(client, number)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    top = after.compare_to(before, "lineno")[:5]
    assert growth < ALLOWED_GROWTH_BYTES, "\n".join(str(stat) for stat in top)
    assert client_store.connection_count() == CAP and server_store.connection_count() == CAP
    assert client_store.session_count() <= CAP and server_store.session_count() <= CAP
