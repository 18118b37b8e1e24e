"""Bounded state: a flood of hellos cannot exhaust memory or push out working connections.

Every hello makes server-side state before the client proves anything, the classic
half-open flood. lab_common.store.BoundedStore caps the entries, expires idle ones (half-open
ones sooner) and, when full, evicts half-open entries before established ones.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.peer import RSA_SUITE, Peer

from lab_common.contract import HEALTH, HELLO, SESSION, path
from lab_common.store import BoundedStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the store itself ------------------------------------------------------------------


def test_idle_entries_expire_and_use_keeps_them_alive():
    clock = FakeClock()
    store: BoundedStore[str] = BoundedStore(capacity=10, ttl=60, clock=clock)
    store.put("used", "a", established=True)
    store.put("idle", "b", established=True)
    for _ in range(3):
        clock.advance(40)
        assert store.get("used") == "a"
    assert store.get("idle") is None
    assert store.expired == 1
    clock.advance(61)
    assert store.get("used") is None


def test_half_open_entries_expire_sooner_than_established_ones():
    clock = FakeClock()
    store: BoundedStore[str] = BoundedStore(capacity=10, ttl=900, half_open_ttl=30, clock=clock)
    store.put("half-open", "h")
    store.put("finished", "f")
    store.mark_established("finished")
    clock.advance(31)
    assert store.get("half-open") is None
    assert store.get("finished") == "f"


def test_a_full_store_evicts_half_open_entries_first():
    store: BoundedStore[int] = BoundedStore(capacity=100, ttl=900, clock=FakeClock())
    for i in range(10):
        store.put(f"established-{i}", i, established=True)
    for i in range(10_000):
        store.put(f"flood-{i}", i)
        assert len(store) <= 100
    assert all(store.get(f"established-{i}") == i for i in range(10))
    assert store.get("flood-9999") == 9999 and store.get("flood-0") is None
    assert store.evicted == 10_000 - 90


def test_a_store_full_of_established_entries_evicts_the_least_recently_used():
    store: BoundedStore[int] = BoundedStore(capacity=3, ttl=900, clock=FakeClock())
    for name in ("a", "b", "c"):
        store.put(name, 0, established=True)
    store.get("a")  # a is now the most recently used
    store.put("d", 0, established=True)
    assert [store.get(name) is not None for name in "abcd"] == [True, False, True, True]


def test_concurrent_puts_never_overfill_the_store():
    store: BoundedStore[int] = BoundedStore(capacity=50, ttl=900)
    start = threading.Barrier(8)

    def flood(worker: int) -> int:
        start.wait(timeout=30)
        biggest = 0
        for i in range(2_000):
            store.put(f"{worker}-{i}", i)
            biggest = max(biggest, len(store))
        return biggest

    with ThreadPoolExecutor(8) as pool:
        assert max(pool.map(flood, range(8), timeout=60)) <= 50
    assert len(store) == 50


# -- through server_svc ------------------------------------------------------------------

FLOOD = 10_000
CAPACITY = 2_000


def _echo(peer: Peer, text: bytes) -> bool:
    _, answer = peer.send(text)
    return answer.status == 200 and peer.open_reply(answer).endswith(text)


def test_a_hello_flood_leaves_memory_bounded_and_connections_working(make_server):
    app = make_server(MAX_CONNECTIONS=CAPACITY)
    http = app.test_client()
    store = app.extensions["server_service"].store
    working = [Peer(http, RSA_SUITE).complete() for _ in range(5)]
    hello = json.dumps({"client_random": "ab" * 32, "cipher_suites": [RSA_SUITE]})
    first_flood_id = None
    for i in range(FLOOD):
        answer = http.post(HELLO, data=hello, content_type="application/json")
        assert answer.status_code == 200
        first_flood_id = first_flood_id or answer.get_json()["connection_id"]
        if i % 1000 == 0:
            assert store.connection_count() <= CAPACITY
            # Established connections stay usable in the middle of the flood.
            assert _echo(working[i // 1000 % 5], b"during the flood")
    assert store.connection_count() == CAPACITY
    assert http.get(HEALTH).get_json()["connections"] == CAPACITY
    assert all(_echo(peer, b"after the flood") for peer in working)
    # The flood's own oldest half-open connections made room.
    gone = http.get(path(SESSION, first_flood_id))
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "unknown_connection"


@pytest.fixture
def clocked(make_server):
    clock = FakeClock()
    app = make_server(STORE_CLOCK=clock)
    return app.test_client(), clock


def test_a_handshake_not_finished_in_time_is_forgotten(clocked):
    http, clock = clocked
    slow = Peer(http)
    assert slow.hello().status == 200
    slow.prepare_finish()
    clock.advance(31)  # HALF_OPEN_TTL is 30 s
    answer = slow.finish()
    assert (answer.status, answer.code) == (404, "unknown_connection")


def test_an_idle_connection_is_forgotten_after_its_ttl(clocked):
    http, clock = clocked
    busy, idle = Peer(http).complete(), Peer(http).complete()
    for _ in range(3):
        clock.advance(600)  # CONNECTION_TTL is 900 s
        assert busy.send(b"still here")[1].status == 200
    assert idle.send(b"hello?")[1].code == "unknown_connection"


def test_an_expired_connection_looks_like_one_never_made(clocked):
    http, clock = clocked
    expired = Peer(http).complete()
    clock.advance(901)
    record = expired.seal(b"late")
    late = expired.message(record)
    never = expired.message(record, connection_id="f" * 32)
    assert late.status == 404
    assert (late.status, late.headers, late.body) == (never.status, never.headers, never.body)


def test_a_session_expires_after_its_ttl(clocked):
    http, clock = clocked
    first = Peer(http).complete()
    clock.advance(3601)  # SESSION_TTL is 3600 s
    again = Peer(http, resume=first.handshake.session)
    assert again.hello().status == 200 and again.hello_json["resumed"] is False
