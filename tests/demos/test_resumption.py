"""POST /demo/resumption: per-replica caches resume about 1 in N, a shared cache and tickets
resume all; a stolen ticket key opens every recorded session it sealed, until it is rotated out."""

from __future__ import annotations

import pytest

from lab_common.contract import DEMO_RESUMPTION


def run(client, **body):
    answer = client.post(DEMO_RESUMPTION, json=body)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_only_a_shared_cache_or_tickets_resume_every_session_across_replicas(client):
    result = run(client, replicas=9, clients=8, rounds=2)
    rates = result["outcome"]["resumption_rate"]
    assert rates["shared_cache"] == 1.0 and rates["tickets"] == 1.0
    assert rates["per_replica_cache"] < 0.4  # about 1 in 9, by the load balancer's dice
    assert result["demo"] == "resumption" and result["steps"]


def test_a_stolen_ticket_key_opens_every_recording_until_it_is_rotated_out(client):
    outcome = run(client, replicas=3, clients=5, rounds=1)["outcome"]
    assert outcome["recorded_sessions"] == 10
    assert outcome["opened_with_stolen_ticket_key"] == 10  # the ECDHE full handshakes too
    assert outcome["opened_after_two_rotations"] is False


def test_the_recording_shows_the_plaintext_the_attacker_read(client):
    assert run(client, clients=1, rounds=1)["plaintext"].endswith("PIN 4711")


@pytest.mark.parametrize(
    "body",
    [
        {"replicas": 1},
        {"replicas": 10},
        {"clients": 0},
        {"clients": 9},
        {"rounds": 3},
        {"other": 1},
    ],
)
def test_bad_parameters_are_refused(client, body):
    answer = client.post(DEMO_RESUMPTION, json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "decode_error"
