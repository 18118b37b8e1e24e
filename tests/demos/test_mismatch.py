"""POST /demo/mismatch: lab_analysis.diagnose names the input behind each classic mistake."""

from __future__ import annotations

import hashlib
import json

import pytest

from kdf_lib.trace import fingerprint
from lab_common.contract import DEMO_MISMATCH

from .lab import Lab, error_of

EXPECTED = {
    "swapped_randoms": ("master_secret", "random_order"),
    "wrong_label": ("master_secret", "label"),
    "missing_transcript_message": ("finished", "transcript"),
    "key_block_seed_order": ("key_block", "random_order"),
}


@pytest.mark.parametrize("mistake", sorted(EXPECTED))
def test_the_diagnosis_names_the_input_that_differs(lab: Lab, mistake: str):
    answer = lab.demo("mismatch", {"mistake": mistake})
    stage, differing_input = EXPECTED[mistake]
    diagnosis = answer["diagnosis"]
    assert diagnosis["stage"] == stage
    assert diagnosis["differing_input"] == differing_input
    assert diagnosis["mistake"] == mistake
    assert diagnosis["explanation"]
    assert answer["correct"] != answer["broken"]
    assert answer["outcome"]["correct_matches_handshake"] is True


def test_the_missing_message_is_named(lab: Lab):
    answer = lab.demo("mismatch", {"mistake": "missing_transcript_message"})
    assert "ServerHelloDone" in answer["diagnosis"]["detail"]


def test_a_correct_pair_is_diagnosed_as_none(lab: Lab):
    answer = lab.demo("mismatch", {"mistake": "none"})
    assert answer["diagnosis"]["differing_input"] == "none"
    assert answer["correct"] == answer["broken"]


def test_only_fingerprints_are_shown_without_reveal_secrets(lab: Lab):
    answer = lab.demo("mismatch", {"mistake": "key_block_seed_order"})
    assert "secrets" not in answer
    assert len(answer["correct"]) == len(answer["broken"]) == 64


def test_reveal_secrets_adds_the_values_behind_the_fingerprints(make_lab):
    lab = make_lab(client_reveal=True)
    answer = lab.demo("mismatch", {"mistake": "key_block_seed_order"})
    secrets = answer["secrets"]
    assert answer["fingerprint"] == "sha256"
    assert fingerprint(bytes.fromhex(secrets["correct"])) == answer["correct"]
    assert fingerprint(bytes.fromhex(secrets["broken"])) == answer["broken"]


def test_a_verify_data_is_shown_by_a_keyed_fingerprint_only(make_lab):
    """12 bytes of verify_data: a plain SHA-256 would give them away to anyone who tries values."""
    lab = make_lab(client_reveal=True)
    answer = lab.demo("mismatch", {"mistake": "missing_transcript_message"})
    assert answer["fingerprint"] == "hmac"
    assert answer["outcome"]["correct_matches_handshake"] is True
    text = json.dumps(answer, ensure_ascii=False)
    for name in ("correct", "broken"):
        value = bytes.fromhex(answer["secrets"][name])
        assert len(value) == 12
        assert hashlib.sha256(value).hexdigest() not in text
    assert "→ hmac " in text and "→ sha256 " not in text


def test_the_demo_works_without_reveal_secrets_on_the_server(make_lab):
    lab = make_lab(server_reveal=False)
    assert lab.demo("mismatch", {"mistake": "wrong_label"})["diagnosis"]["differing_input"] == (
        "label"
    )


@pytest.mark.parametrize("body", [{}, {"mistake": "typo"}, {"mistake": None}])
def test_an_unknown_mistake_is_refused(lab: Lab, body: dict):
    assert error_of(lab.client.post(DEMO_MISMATCH, json=body), 400)["code"] == "decode_error"
