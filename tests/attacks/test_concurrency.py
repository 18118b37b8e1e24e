"""Racing requests on one connection: a sequence number is used once, whatever the timing.

gunicorn serves server_svc with threads, so two /message calls for one connection can run
at once. Each connection's lock makes them take turns; without it both could open their
record with the same read sequence number, and a replay would be processed twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.peer import ECDHE_SUITE, RSA_SUITE, Answer, Peer, b64, post

from kdf_lib.record import ContentType, RecordProtection
from lab_common.contract import MESSAGE

THREADS = 8
ROUNDS = 10


@pytest.fixture(autouse=True)
def wide_race_window(monkeypatch):
    """Pause between reading a sequence number and using it, so that unsynchronised
    requests really do overlap there (under the GIL they rarely would by chance)."""
    read_sequence_number = RecordProtection._next_seq

    def slow(self: RecordProtection) -> int:
        seq = read_sequence_number(self)
        time.sleep(0.002)
        return seq

    monkeypatch.setattr(RecordProtection, "_next_seq", slow)


def _race(server_app, connection_id: str, records: list[bytes]) -> list[Answer]:
    """Post each record from its own thread and test client, all released at once."""
    start = threading.Barrier(len(records))

    def send(record: bytes) -> Answer:
        http = server_app.test_client()
        body = {"connection_id": connection_id, "record": b64(record)}
        start.wait(timeout=30)
        return post(http, MESSAGE, body)

    with ThreadPoolExecutor(len(records)) as pool:
        return list(pool.map(send, records, timeout=60))


def _outcomes(answers: list[Answer]) -> Counter[str]:
    return Counter(answer.code or "ok" for answer in answers)


def test_the_same_record_sent_from_many_threads_is_accepted_once(server_app, server):
    for round_ in range(ROUNDS):
        victim = Peer(server, RSA_SUITE if round_ % 2 else ECDHE_SUITE).complete()
        answers = _race(server_app, victim.connection_id, [victim.seal(b"pay once")] * THREADS)
        outcomes = _outcomes(answers)
        assert outcomes["ok"] == 1, outcomes
        # The losers found the sequence number used (bad_record_mac), which closed the
        # connection for those that came after (unexpected_message).
        assert set(outcomes) <= {"ok", "bad_record_mac", "unexpected_message"}
        assert outcomes["bad_record_mac"] >= 1
        view = victim.server_view()
        assert view["messages"] == 1 and view["sequence_numbers"]["read"] == 2


def test_two_different_records_for_one_sequence_number_are_not_both_accepted(server_app, server):
    for _ in range(ROUNDS):
        victim = Peer(server).complete()
        twin = victim.fresh_writer()
        twin.seq = 1
        records = [victim.seal(b"pay alice"), twin.seal(ContentType.application_data, b"pay bob")]
        outcomes = _outcomes(_race(server_app, victim.connection_id, records))
        assert outcomes == Counter({"ok": 1, "bad_record_mac": 1}), outcomes


def test_separate_connections_run_side_by_side(server_app, server):
    peers = [Peer(server).complete() for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def talk(peer: Peer) -> bool:
        peer.http = server_app.test_client()
        start.wait(timeout=30)
        for i in range(5):
            text = f"message {i}".encode()
            _, answer = peer.send(text)
            if answer.status != 200 or not peer.open_reply(answer).endswith(text):
                return False
        return True

    with ThreadPoolExecutor(THREADS) as pool:
        assert all(pool.map(talk, peers, timeout=60))
