"""Lone UTF-16 surrogates in JSON: refused by the codec with 400 decode_error, never a 5xx.

``"\\ud800"`` is valid JSON (RFC 8259 §8.2 leaves it to the parser) but not Unicode text: the
string cannot be encoded as UTF-8, so it broke whatever wrote it out later (a 500 from
client_svc's POST /message; a metric label that made every later scrape fail). The strict
codec (kdf_lib.messages.parse_json) refuses any string or key holding one, while a pair
(``"\\ud83d\\ude00"``, one character outside the BMP) stays valid. Every documented JSON
endpoint of both services is attacked under a real gunicorn, with the surrogate in each
string field its schema lists and in a key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from helpers.served import Service, start_lab, stop_lab

from kdf_lib.errors import DecodeError
from kdf_lib.messages import parse_json
from lab_common.contract import (
    DEMO_MISMATCH,
    DEMO_TAMPER,
    HANDSHAKE,
    HEALTH,
    MESSAGE,
    METRICS,
    OPENAPI,
)

from .documented import operations, string_slots
from .test_bad_bodies import VALID

LONE = "abc\ud800def"
#: Fields the client's document leaves open (the demos take objects "open to new fields"),
#: added so that each field a view reads is covered too.
UNDOCUMENTED_FIELDS = {
    ("client", DEMO_TAMPER): ("attack",),
    ("client", DEMO_MISMATCH): ("mistake",),
}


# -- the codec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        r'{"x": "\ud800"}',
        r'{"x": "\uDFFF"}',
        r'{"x": "abc\udc80def"}',
        r'{"x": "\ude00\ud83d"}',  # a pair in the wrong order is two lone halves
        r'{"x": "\ud83d"}',
        r'{"x": "\ud83dx\ude00"}',
        r'{"\ud800": 1}',
        r'{"x": {"y": ["ok", "\udbff"]}}',
        r'{"x": "\\\ud800"}',  # an escaped backslash, then the escape
    ],
)
def test_a_lone_surrogate_anywhere_is_a_decode_error(body):
    with pytest.raises(DecodeError, match="surrogate"):
        parse_json(body.encode())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (r'{"x": "\ud83d\ude00"}', {"x": "\U0001f600"}),
        (r'{"\uD83D\uDE00": "\udbff\udfff"}', {"\U0001f600": "\U0010ffff"}),
        (r'{"x": "\\ud800"}', {"x": "\\ud800"}),  # a backslash, then the text "ud800"
        ('{"x": "\U0001f600"}', {"x": "\U0001f600"}),
    ],
)
def test_paired_surrogates_and_look_alikes_stay_valid(body, expected):
    assert parse_json(body.encode()) == expected


def test_a_surrogate_in_text_given_as_str_is_refused():
    with pytest.raises(DecodeError):
        parse_json('{"x": "\ud800"}')


# -- both services under gunicorn --------------------------------------------------------


@pytest.fixture(scope="module")
def services(tmp_path_factory, pair_certificates) -> Iterator[dict[str, Service]]:
    lab = start_lab(tmp_path_factory.mktemp("surrogates"), certificates=pair_certificates)
    try:
        yield {"server": lab.server, "client": lab.client}
    finally:
        stop_lab(lab)


def _cases(services: dict[str, Service]) -> list[tuple[str, str, str, dict[str, object]]]:
    """(service, path, where, body) for every string field and a key of every JSON endpoint."""
    cases = []
    for name, served in services.items():
        document = served.http().get(OPENAPI).get_json()
        for operation in operations(document):
            if operation.body_schema is None:
                continue
            path = operation.url("0" * 32)
            base = dict(VALID.get((name, path), {}))
            slots = list(string_slots(operation.body_schema, LONE))
            slots += [(f".{f}", {f: LONE}) for f in UNDOCUMENTED_FIELDS.get((name, path), ())]
            for where, value in slots:
                assert isinstance(value, dict)
                cases.append((name, path, where, {**base, **value}))
            cases.append((name, path, "a key", {**base, LONE: "x"}))
    return cases


def test_a_lone_surrogate_in_any_field_or_key_of_any_endpoint_is_a_400(services):
    cases = _cases(services)
    endpoints = {(name, path) for name, path, _, _ in cases}
    assert len(endpoints) >= 10, endpoints  # 4 of server_svc, 7 of client_svc today
    wrong = []
    for name, path, where, body in cases:
        text = json.dumps(body)  # ensure_ascii: the surrogate travels as a \ud800 escape
        assert "\\ud800" in text
        answer = services[name].http().post(path, data=text, content_type="application/json")
        error = answer.get_json().get("error", {}) if answer.mimetype == "application/json" else {}
        if (
            answer.status_code != 400
            or error.get("code") != "decode_error"
            or "surrogate" not in error.get("message", "")
        ):
            wrong.append((name, path, where, answer.status_code, answer.body[:120]))
    assert wrong == []


def test_the_services_still_answer_and_scrape_after_the_attack(services):
    for served in services.values():
        served.http().post(
            MESSAGE, data=json.dumps({"plaintext": LONE}), content_type="application/json"
        )
        assert served.http().get(HEALTH).status_code == 200
        assert served.http().get(METRICS).status_code == 200


def test_a_paired_surrogate_in_a_message_is_delivered(services):
    client = services["client"].http()
    assert client.post(HANDSHAKE, json={}).status_code == 200
    text = "smile \U0001f600"
    answer = client.post(
        MESSAGE, data=json.dumps({"plaintext": text}), content_type="application/json"
    )
    assert answer.status_code == 200, answer.body
    assert answer.get_json()["reply"]["plaintext"].endswith(text)
