"""The history checker itself: it passes a clean history and names every broken guarantee."""

from __future__ import annotations

from helpers.history import Acknowledged, History, check

CONNECTION = "ab" * 16


def line(service: str, seq: int, reply_seq: int, replica: str = "r1", **extra) -> dict:
    return {
        "event": "message",
        "service": service,
        "replica": replica,
        "connection_id": CONNECTION,
        "seq": seq,
        "records": 1,
        "reply_seq": reply_seq,
        "reply_records": 1,
        **extra,
    }


def clean() -> History:
    history = History()
    for number in (1, 2, 3):
        history.logged += [line("client_svc", number, number), line("server_svc", number, number)]
        history.acknowledged.append(Acknowledged(CONNECTION, number, 1, number, 1))
    return history


def test_a_clean_history_passes():
    verdict = check(clean())
    assert verdict.ok and verdict.summary["acknowledged"] == 3


def test_a_sequence_number_sealed_twice_by_two_replicas_is_found():
    history = clean()
    history.logged.append(line("server_svc", 4, 3, replica="r2"))  # reply seq 3 again
    verdict = check(history)
    assert any("server of" in p and "sealed twice" in p for p in verdict.problems)


def test_a_record_opened_twice_is_found():
    history = clean()
    history.logged.append(line("server_svc", 2, 9, replica="r2"))
    assert any("opened a record" in p for p in check(history).problems)


def test_an_acknowledged_message_never_processed_is_found():
    history = clean()
    history.acknowledged.append(Acknowledged(CONNECTION, 7, 1, 7, 1))
    assert any("processed 0 times" in p for p in check(history).problems)


def test_log_lines_are_read_from_compose_output():
    history = History()
    text = 'server_1  | {"event": "message", "service": "server_svc", "seq": 1}\nnoise\n'
    assert history.read_logs(text) == 1
