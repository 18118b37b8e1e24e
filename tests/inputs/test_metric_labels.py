"""Metric labels come from closed sets: nothing a client sends can grow or break GET /metrics.

Each label value is one of the sets lab_common.metrics documents, or ``other``. An invented
suite name, key exchange or HTTP method adds no series, and a lone UTF-16 surrogate (valid JSON,
not encodable as UTF-8) cannot make the scrape unwritable. Shown through Flask's test client, and
against both services under gunicorn, the scrape read with prometheus_client's own parser.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.rawhttp import call, scrape
from helpers.served import LiveLab, start_lab, stop_lab
from prometheus_client.parser import text_string_to_metric_families

from kdf_lib.errors import ALL_ERRORS
from lab_common import errors, metrics
from lab_common.contract import HANDSHAKE, HEALTH, HELLO, METRICS

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Invented values of each kind per round; two rounds, so 2 x this many of each in all.
PER_ROUND = 150
#: A bound on all samples of a scrape after the attack. With closed sets it is about 90 on
#: client_svc under gunicorn, whatever PER_ROUND is; without them each round added 600.
MAX_SAMPLES = 300
LONE_SURROGATE = b'{"cipher_suite": "\\udc80"}'

Sample = tuple[str, dict[str, str]]


def _invented_method(n: int) -> str:
    """An upper-case token gunicorn accepts as a method, different for each ``n``."""
    letters = ""
    while True:
        n, digit = divmod(n, 26)
        letters += chr(ord("A") + digit)
        if not n:
            return "FOOBAR" + letters


def samples(scrape: str) -> list[Sample]:
    """(family, labels) of every sample, read with prometheus_client's parser. Each counter's and
    histogram's creation times come as a family of their own, <name>_created, with its labels."""
    return [
        (family.name.removesuffix("_created"), sample.labels)
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    ]


def assert_labels_closed(found: list[Sample], app: Any) -> None:
    closed = metrics.label_values(app)
    for family, labels in found:
        for label, value in labels.items():
            assert value in closed.get(family, {}).get(label, ()), (family, label, ascii(value))


# -- through Flask's test client ---------------------------------------------------------------


def _scrape(app_client) -> str:
    response = app_client.get(METRICS)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return str(response.get_data(as_text=True))


def _attack_in_process(client, server, round_: int) -> None:
    for n in range(round_ * PER_ROUND, (round_ + 1) * PER_ROUND):
        suite = f"TLS_INVENTED_{n}_WITH_NOTHING"
        assert client.post(HANDSHAKE, json={"cipher_suite": suite}).status_code == 400
        assert client.post(HANDSHAKE, json={"key_exchange": f"kx{n}"}).status_code == 400
        for app_client in (client, server):
            assert app_client.open(HEALTH, method=_invented_method(n)).status_code == 405


def test_a_lone_surrogate_suite_leaves_the_scrape_valid(client_app, client):
    answer = client.post(HANDSHAKE, data=LONE_SURROGATE, content_type="application/json")
    assert answer.status_code == 400
    assert_labels_closed(samples(_scrape(client)), client_app)


class _InventingUpstream:
    """A server_svc that is not ours (the mitm profile's threat model): it refuses every request
    with an error code of its own making, a new one each time, or a lone surrogate."""

    def __init__(self) -> None:
        self.codes = iter([*(f"invented_{n}" for n in range(2 * PER_ROUND)), "\udc80"])

    def request(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        error = {"code": next(self.codes, "invented"), "message": "refused"}
        return 400, json.dumps({"error": error}).encode()


def test_codes_invented_by_a_hostile_upstream_add_no_series(make_client_app):
    app = make_client_app(TRANSPORT=_InventingUpstream())
    client = app.test_client()
    _scrape(client)  # the scrape's own series exist from here on
    counts = []
    for _ in range(2):
        for _ in range(PER_ROUND):
            assert client.post(HANDSHAKE).status_code == 502
        counts.append(len(samples(_scrape(client))))
    assert counts[1] == counts[0], "invented codes added series"
    assert client.post(HANDSHAKE).status_code == 502  # the lone surrogate
    found = samples(_scrape(client))
    assert len(found) == counts[0]
    assert_labels_closed(found, app)


def test_invented_suites_and_methods_add_no_series(client_app, client, server_app, server):
    pairs = [(client, client_app), (server, server_app)]
    for app_client, _ in pairs:
        _scrape(app_client)  # the scrape's own series exist from here on
    _attack_in_process(client, server, 0)
    first = [samples(_scrape(app_client)) for app_client, _ in pairs]
    _attack_in_process(client, server, 1)
    second = [samples(_scrape(app_client)) for app_client, _ in pairs]
    assert list(map(len, second)) == list(map(len, first)), "invented values added series"
    assert max(map(len, second)) < MAX_SAMPLES
    for found, (_, app) in zip(second, pairs, strict=True):
        assert_labels_closed(found, app)


def test_invented_label_values_share_one_series_and_one_cached_child():
    lab = metrics.LabMetrics("test")

    def count_samples() -> int:
        return len(samples(lab.render().get_data(as_text=True)))

    lab.handshake(resumed=False, key_exchange="kx", suite="S", outcome="code", seconds=0.1)
    lab.message("code")
    one_each = count_samples()
    for value in [*(f"invented{n}" for n in range(PER_ROUND)), "\udc80"]:
        lab.handshake(resumed=False, key_exchange=value, suite=value, outcome=value, seconds=0.1)
        lab.message(value)
    assert count_samples() == one_each
    # The looked-up children are cached by the clamped values: one entry, not one per value.
    assert len(lab.handshakes._children) == len(lab.messages._children) == 1


@pytest.mark.parametrize(("status", "label"), [(421, "421"), (299, "2xx"), (999, "other")])
def test_a_status_outside_the_http_registry_is_counted_by_its_class(server_app, status, label):
    server_app.add_url_rule("/odd", "odd", lambda: ("", status))
    client = server_app.test_client()
    client.get("/odd")
    found = samples(_scrape(client))
    statuses = {
        lb["status"] for f, lb in found if f == "tls_lab_http_requests" and lb["endpoint"] == "/odd"
    }
    assert statuses == {label}


# -- every code the services write is in the closed set of failure codes -------------------------


def _literal_codes() -> Iterator[tuple[str, int, str]]:
    """(file, line, code) of each literal code given to a ServiceError (or a subclass's
    super().__init__), error_response or note_error in the services' packages."""
    trees = {
        path: ast.parse(path.read_text(), str(path))
        for package in ("lab_common", "client_svc", "server_svc", "lab_cli")
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
    }
    errors = {"ServiceError"}
    subclasses: list[ast.ClassDef] = []
    grown = True
    while grown:  # subclasses of subclasses, wherever they are defined
        grown = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.ClassDef)
                    and node.name not in errors
                    and any(isinstance(b, ast.Name) and b.id in errors for b in node.bases)
                ):
                    errors.add(node.name)
                    subclasses.append(node)
                    grown = True
    callees = errors | {"error_response", "note_error"}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = (
                node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            )
            first: Any = node.args[0] if node.args else None
            if name in callees and isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield path.name, node.lineno, first.value
    for cls in subclasses:
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "__init__"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                yield cls.name, node.lineno, str(node.args[0].value)


def test_every_error_code_written_in_the_services_is_a_known_code():
    known = {e.code for e in ALL_ERRORS} | set(errors.HTTP_CODES.values()) | errors.SERVICE_CODES
    found = list(_literal_codes())
    assert len(found) > 10, "the scan found too few codes to be looking at the right files"
    assert [f for f in found if f[2] not in known] == []


# -- against both services under gunicorn -----------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveLab]:
    lab = start_lab(tmp_path_factory.mktemp("metric-labels"))
    try:
        yield lab
    finally:
        stop_lab(lab)


def _attack_live(lab: LiveLab, round_: int) -> None:
    for n in range(round_ * PER_ROUND, (round_ + 1) * PER_ROUND):
        suite = {"cipher_suite": f"TLS_INVENTED_{n}_WITH_NOTHING"}
        assert call(lab.client_url, "POST", HANDSHAKE, body=suite)[0] == 400
        kx = {"key_exchange": f"kx{n}"}
        assert call(lab.client_url, "POST", HANDSHAKE, body=kx)[0] == 400
        hello = {"client_random": "00" * 32, "cipher_suites": [f"TLS_INVENTED_{n}"]}
        assert call(lab.server_url, "POST", HELLO, body=hello)[0] < 500
        for url in (lab.client_url, lab.server_url):
            assert call(url, _invented_method(n), HEALTH)[0] == 405


def test_no_request_breaks_or_grows_the_scrape_of_either_live_service(live, client_app, server_app):
    services = [(live.client_url, client_app), (live.server_url, server_app)]
    for url, _ in services:
        scrape(url)  # the scrape's own series exist from here on
    status, _, _ = call(live.client_url, "POST", HANDSHAKE, body=LONE_SURROGATE)
    assert status == 400
    _attack_live(live, 0)
    first = [samples(scrape(url)) for url, _ in services]
    _attack_live(live, 1)
    second = [samples(scrape(url)) for url, _ in services]
    assert list(map(len, second)) == list(map(len, first)), "invented values added series"
    assert max(map(len, second)) < MAX_SAMPLES
    for found, (_, app) in zip(second, services, strict=True):
        assert_labels_closed(found, app)
        assert ("tls_lab_http_requests", "other") in {(f, lb.get("method")) for f, lb in found}
