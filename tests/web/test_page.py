"""The live page through Flask's test client: the page, its files, its headers and POST /api/prf."""

from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac

from client_svc.web import MAX_PRF_LENGTH
from kdf_lib.suites import SUITES
from lab_common.contract import HANDSHAKE, PAGE, PRF_CALCULATOR

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "prf.json").read_text(encoding="utf-8")
)
PRF_CASES = {case["id"]: case for case in VECTORS["cases"]}
STATIC = Path(__file__).resolve().parents[2] / "client_svc" / "static"
HASH_CLASSES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}


def _hmac(hash_name: str, key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, HASH_CLASSES[hash_name]())
    mac.update(data)
    return mac.finalize()


def prf_request(client, **body):
    return client.post(PRF_CALCULATOR, json=body)


class _PageAudit(HTMLParser):
    """Collects what a strict CSP would refuse: inline scripts, style attributes, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[dict[str, str | None]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline_style_attrs: list[str] = []
        self.handlers: list[str] = []
        self.labels_for: set[str] = set()
        self.inputs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            if attributes.get("src"):
                self.scripts.append(str(attributes["src"]))
            else:
                self.inline_scripts.append(attributes)
        if tag == "style":
            self.styles.append(tag)
        if "style" in attributes:
            self.inline_style_attrs.append(tag)
        self.handlers += [name for name in attributes if name.startswith("on")]
        if tag == "label" and attributes.get("for"):
            self.labels_for.add(str(attributes["for"]))
        if tag in ("input", "select", "textarea") and attributes.get("id"):
            self.inputs.append(str(attributes["id"]))


# -- the page and its files --------------------------------------------------------------------


def test_page_is_served_with_a_strict_content_security_policy(client):
    response = client.get(PAGE)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_page_runs_no_inline_script_style_or_handler(client):
    audit = _PageAudit()
    audit.feed(client.get(PAGE).get_data(as_text=True))
    assert audit.scripts == ["/static/lab.js"]
    # The one script element without src is the page's JSON data block, which never runs.
    assert audit.inline_scripts == [{"type": "application/json", "id": "lab-page-data"}]
    assert audit.styles == [] and audit.inline_style_attrs == [] and audit.handlers == []


def test_every_input_on_the_page_has_a_label(client):
    audit = _PageAudit()
    audit.feed(client.get(PAGE).get_data(as_text=True))
    unlabelled = [i for i in audit.inputs if i not in audit.labels_for and i not in ("ems", "etm")]
    assert unlabelled == []  # ems and etm sit inside their <label>


def test_page_offers_every_suite_under_its_key_exchange(client):
    html = client.get(PAGE).get_data(as_text=True)
    for name, suite in SUITES.items():
        assert f'<option value="{name}"' in html
        select = html.index(f'id="{suite.key_exchange.value}-suite"')
        close = html.index("</select>", select)
        assert select < html.index(f'<option value="{name}"') < close
    assert '<option value="TLS_RSA_WITH_AES_256_CBC_SHA256" selected>' in html
    assert '<option value="TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" selected>' in html
    assert '<option value="TLS_DHE_RSA_WITH_AES_128_GCM_SHA256" selected>' in html


def test_page_data_block_carries_the_suite_table(client):
    html = client.get(PAGE).get_data(as_text=True)
    start = html.index('id="lab-page-data">') + len('id="lab-page-data">')
    data = json.loads(html[start : html.index("</script>", start)])
    assert {suite["name"] for suite in data["suites"]} == set(SUITES)
    assert data["max_prf_length"] == MAX_PRF_LENGTH


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/static/lab.js", "text/javascript"),
        ("/static/lab.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files_are_served_with_nosniff(client, path, mimetype):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response.headers
    response.close()


def test_script_never_turns_strings_into_html_or_code():
    source = (STATIC / "lab.js").read_text(encoding="utf-8")
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
    ):
        assert sink not in source, sink


def test_page_needs_nothing_from_the_internet():
    for name in ("lab.js", "lab.css", "favicon.svg"):
        text = (STATIC / name).read_text(encoding="utf-8")
        assert "https://" not in text and "//cdn" not in text and "@import" not in text


# -- POST /api/prf -------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", sorted(PRF_CASES))
def test_prf_calculator_matches_the_known_answers(client, case_id):
    case = PRF_CASES[case_id]
    response = prf_request(
        client,
        secret=case["secret"],
        label=case["label"],
        seed=case["seed"],
        length=case["length"],
        hash_name=case["hash_name"],
    )
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["output"] == case["output"]
    output = bytes.fromhex(case["output"])
    # Below 16 bytes no plain SHA-256 is published: trying every value would reverse it.
    expected = hashlib.sha256(output).hexdigest() if len(output) >= 16 else None
    assert answer["output_sha256"] == expected
    assert answer["label_hex"] == case["label_hex"]


def test_prf_calculator_shows_every_round_of_p_hash(client):
    # RFC 5246 §5: A(0) = seed, A(i) = HMAC(secret, A(i-1)); each block is HMAC(secret, A(i) + seed),
    # where P_hash's seed is label + seed. Recomputed here with cryptography's HMAC.
    case = PRF_CASES["ietf-tls-list-prf-sha256"]
    secret = bytes.fromhex(case["secret"])
    seed = case["label"].encode("ascii") + bytes.fromhex(case["seed"])
    answer = prf_request(
        client,
        secret=case["secret"],
        label=case["label"],
        seed=case["seed"],
        length=case["length"],
        hash_name="sha256",
    ).get_json()
    rounds = -(-case["length"] // 32)
    a_values, blocks, a = [], [], seed
    for _ in range(rounds):
        a = _hmac("sha256", secret, a)
        a_values.append(a.hex())
        blocks.append(_hmac("sha256", secret, a + seed).hex())
    assert answer["p_hash_seed"] == seed.hex()
    assert answer["a"] == a_values
    assert answer["blocks"] == blocks
    assert all(len(block) == 64 for block in answer["blocks"])  # the last block stays whole
    assert answer["output"] == "".join(blocks)[: 2 * case["length"]] == case["output"]


def test_prf_calculator_uses_sha384_blocks_for_sha384(client):
    case = PRF_CASES["ietf-tls-list-prf-sha384"]
    answer = prf_request(
        client,
        secret=case["secret"],
        label=case["label"],
        seed=case["seed"],
        length=case["length"],
        hash_name="sha384",
    ).get_json()
    assert len(answer["a"]) == len(answer["blocks"]) == -(-case["length"] // 48)
    assert all(len(block) == 96 for block in answer["blocks"])
    assert answer["output"] == case["output"]


def test_prf_calculator_reproduces_a_handshake_with_the_rfc_seed_orders(revealing_client):
    # The presets of the page: the master secret takes client_random + server_random, the key
    # block server_random + client_random; the reverse order gives keys no TLS peer would use.
    hs = revealing_client.post(
        HANDSHAKE, json={"key_exchange": "rsa", "extended_master_secret": False}
    ).get_json()
    pms = next(
        step["secrets"]["pre_master_secret"]
        for step in hs["trace"]
        if step["actor"] == "client" and "pre_master_secret" in step.get("secrets", {})
    )
    cr, sr = hs["client_random"], hs["server_random"]
    master = prf_request(
        revealing_client, secret=pms, label="master secret", seed=cr + sr, length=48
    ).get_json()
    assert master["output"] == hs["secrets"]["master_secret"]
    assert master["output_sha256"] == hs["fingerprints"]["master_secret"]
    length = SUITES[hs["cipher_suite"]].key_block_length
    block = prf_request(
        revealing_client,
        secret=master["output"],
        label="key expansion",
        seed=sr + cr,
        length=length,
    ).get_json()
    assert block["output"] == hs["secrets"]["key_block"]
    simplified = prf_request(
        revealing_client,
        secret=master["output"],
        label="key expansion",
        seed=cr + sr,
        length=length,
    ).get_json()
    assert simplified["output"] != hs["secrets"]["key_block"]


def test_prf_calculator_defaults_to_sha256(client):
    answer = prf_request(client, secret="", label="x", seed="", length=1).get_json()
    assert answer["hash_name"] == "sha256" and len(answer["output"]) == 2


GOOD = {"secret": "00", "label": "test label", "seed": "01", "length": 16, "hash_name": "sha256"}


@pytest.mark.parametrize(
    "change",
    [
        {"length": 0},
        {"length": MAX_PRF_LENGTH + 1},
        {"length": True},
        {"length": 16.0},
        {"length": "16"},
        {"secret": "0"},
        {"secret": "zz"},
        {"secret": "00" * 1025},
        {"seed": 1},
        {"label": "läbel"},
        {"label": "tab\there"},
        {"label": "x" * 256},
        {"hash_name": "md5"},
        {"hash_name": "SHA256"},
        {"hash_name": {}},
        {"hash_name": ["sha256"]},
        {"label": ["master secret"]},
        {"extra": 1},
    ],
    ids=lambda change: ",".join(f"{k}={str(v)[:12]}" for k, v in change.items()),
)
def test_prf_calculator_refuses_bad_input_as_decode_error(client, change):
    response = prf_request(client, **{**GOOD, **change})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "decode_error"


@pytest.mark.parametrize("missing", ["secret", "label", "seed", "length"])
def test_prf_calculator_requires_its_fields(client, missing):
    body = {k: v for k, v in GOOD.items() if k != missing}
    response = prf_request(client, **body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "decode_error"


def test_prf_calculator_refuses_duplicate_keys_and_non_json(client):
    duplicate = client.post(
        PRF_CALCULATOR,
        data='{"secret": "00", "secret": "01", "label": "a", "seed": "", "length": 1}',
        content_type="application/json",
    )
    assert duplicate.status_code == 400
    assert duplicate.get_json()["error"]["code"] == "decode_error"
    form = client.post(PRF_CALCULATOR, data="secret=00", content_type="text/plain")
    assert form.status_code == 415
    assert form.get_json()["error"]["code"] == "unsupported_media_type"


def test_prf_calculator_answers_its_largest_length(client):
    answer = prf_request(client, **{**GOOD, "length": MAX_PRF_LENGTH}).get_json()
    assert len(answer["output"]) == 2 * MAX_PRF_LENGTH
    assert len(answer["a"]) == MAX_PRF_LENGTH // 32
