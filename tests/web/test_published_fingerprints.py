"""No published fingerprint gives a short value away (docs/protocol.md §3.8).

A SHA-256 of a 4-byte GCM salt is reversed by hashing all 2^32 candidates. Both services run
under gunicorn as users start them, client_svc with SSLKEYLOGFILE, so this test learns each
master secret the honest way, as Wireshark would. It runs a handshake with each of the 13
suites and a resumed one, sends a message on each, runs the demos and tls-lab, and collects
everything published: the answers, GET /sessions/<id> on both services, the metrics, the page,
the service logs and tls-lab's output. From the key log and the published randoms it derives
every key-block part and both verify_data values itself, with kdf_lib, checks the derivation by
opening the recorded Finished records, and then looks for the SHA-256 of every value under 16
bytes in each encoding the code used. None may appear, whether REVEAL_SECRETS is off or on
(with it on, the values themselves may: that is the demo switch). The fingerprints that remain
must still match between client_svc and server_svc.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from helpers.served import REPO_ROOT, LiveLab, start_lab, stop_lab

from kdf_lib import keylog
from kdf_lib.messages import Finished
from kdf_lib.prf import finished_verify_data, key_block, prf
from kdf_lib.record import ContentType
from kdf_lib.suites import SUITES, CipherSuite, key_block_layout, split_key_block
from kdf_lib.trace import StepKind
from lab_analysis.recorded import RecordedHandshake, parse_exchanges
from lab_common.contract import (
    CONNECTION_ID_PATTERN,
    DEMO_FORWARD_SECRECY,
    DEMO_MISMATCH,
    DEMO_TAMPER,
    HANDSHAKE,
    MESSAGE,
    METRICS,
    PAGE,
    SESSION,
    path,
)

SHORT = 16  # bytes: below this no value may have its plain SHA-256 published
GCM = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
CHACHA = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
MISTAKES = (
    "swapped_randoms",
    "wrong_label",
    "missing_transcript_message",
    "key_block_seed_order",
    "none",
)
TAMPER_ATTACKS = ("flip_record", "replay_record", "edit_hello")
HTTP_TIMEOUT_S = 60
CLI_TIMEOUT_S = 120
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_CONNECTION_ID = re.compile(rf"\b{CONNECTION_ID_PATTERN}\b")
_RANDOM = re.compile(r"[0-9a-f]{64}")


@dataclass
class Published:
    """Everything one lab published, and what the test derived on its own."""

    lab: LiveLab
    reveal: bool
    texts: list[str] = field(default_factory=list)
    #: The main handshakes: POST /handshake answer, client_svc and server_svc session views.
    runs: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    masters: dict[bytes, bytes] = field(default_factory=dict)

    def get(self, url: str) -> tuple[int, Any]:
        return self._call(urllib.request.Request(url))

    def post(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        return self._call(request)

    def _call(self, request: urllib.request.Request) -> tuple[int, Any]:
        try:
            with _OPENER.open(request, timeout=HTTP_TIMEOUT_S) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        text = raw.decode("utf-8", "replace")
        self.texts.append(text)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text


# -- running the lab -------------------------------------------------------------------------


def _handshake(p: Published, body: dict[str, Any]) -> dict[str, Any]:
    client, server = p.lab.client_url, p.lab.server_url
    status, answer = p.post(f"{client}{HANDSHAKE}", body)
    assert status == 200, answer
    cid = answer["connection_id"]
    status, sent = p.post(f"{client}{MESSAGE}", {"connection_id": cid, "plaintext": "PIN 4711"})
    assert status == 200, sent
    status, client_view = p.get(f"{client}{path(SESSION, cid)}")
    assert status == 200, client_view
    status, server_view = p.get(f"{server}{path(SESSION, cid)}")
    assert status == 200, server_view
    p.runs.append((answer, client_view, server_view))
    return answer


def _tls_lab(p: Published, *args: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONIOENCODING": "utf-8",
        "COLUMNS": "100",
    }
    done = subprocess.run(
        [sys.executable, "-m", "lab_cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    out = done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, out
    p.texts.append(out)


def _run_everything(p: Published, tmp: Path) -> None:
    client, server = p.lab.client_url, p.lab.server_url
    answers = {name: _handshake(p, {"cipher_suite": name}) for name in SUITES}
    _handshake(p, {"resume": answers[GCM]["session_id"]})
    # Everything the live page shows comes from these answers; the page itself carries none.
    for url in (
        f"{client}{PAGE}",
        f"{client}/static/lab.js",
        f"{client}{METRICS}",
        f"{server}{METRICS}",
    ):
        p.get(url)
    demos = [(DEMO_MISMATCH, {"mistake": m}) for m in MISTAKES]
    demos += [(DEMO_TAMPER, {"attack": a}) for a in TAMPER_ATTACKS]
    demo_answers = []
    for demo, body in demos:
        status, answer = p.post(f"{client}{demo}", body)
        assert status == 200, answer
        demo_answers.append(answer)
    # It needs server_svc's private key, which only REVEAL_SECRETS=1 hands out (else 409).
    status, answer = p.post(f"{client}{DEMO_FORWARD_SECRECY}", {"sessions": 1})
    assert status == (200 if p.reveal else 409), answer
    demo_answers.append(answer)
    # The demos' own connections: server_svc still knows them (client_svc keeps them apart).
    for cid in sorted(set(_CONNECTION_ID.findall(json.dumps(demo_answers)))):
        p.get(f"{server}{path(SESSION, cid)}")
    for suite in (GCM, CHACHA):
        session, records = tmp / f"{suite}.session.json", tmp / f"{suite}.records.json"
        common = ["--client", client, "--server", server, "--suite", suite, "--message", "hi"]
        saves = ["--save-session", str(session), "--save-records", str(records)]
        _tls_lab(p, "handshake", *common, "--no-color", "--explain", *saves)
        _tls_lab(p, "handshake", *common, "--json")
        keys = ["--keylog", str(tmp / "keylog"), "--session", str(session)]
        _tls_lab(p, "decrypt", *keys, "--records", str(records), "--no-color")
        p.texts.append(session.read_text())
    # Last, so that every request above has left its log lines.
    for log in sorted(p.lab.log_dir.glob("*.log")):
        p.texts.append(log.read_text(errors="replace"))
    for line in (tmp / "keylog").read_text().splitlines():
        entry = keylog.parse_line(line)
        if entry is not None:
            p.masters[entry.client_random] = entry.master_secret


@pytest.fixture(scope="module", params=[False, True], ids=["secrets-hidden", "REVEAL_SECRETS=1"])
def published(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Published]:
    reveal: bool = request.param
    tmp = tmp_path_factory.mktemp("fingerprints-reveal" if reveal else "fingerprints")
    lab = start_lab(
        tmp,
        reveal_secrets=reveal,
        settings={"SSLKEYLOGFILE": str(tmp / "keylog"), "LOG_LEVEL": "info"},
    )
    try:
        p = Published(lab, reveal)
        _run_everything(p, tmp)
        yield p
    finally:
        stop_lab(lab)


# -- deriving the short values from the key log ------------------------------------------------


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for inner in value.values():
            yield from _objects(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _objects(inner)


def _json_values(texts: list[str]) -> list[Any]:
    found = []
    for text in texts:
        try:
            found.append(json.loads(text))
        except ValueError:
            continue
    return found


def _connections(p: Published) -> set[tuple[bytes, bytes, CipherSuite]]:
    """(client_random, server_random, suite) of every connection any answer describes."""
    found = set()
    for obj in (o for v in _json_values(p.texts) for o in _objects(v)):
        cr, sr, suite = obj.get("client_random"), obj.get("server_random"), obj.get("cipher_suite")
        randoms = [r for r in (cr, sr) if isinstance(r, str) and _RANDOM.fullmatch(r)]
        if len(randoms) == 2 and suite in SUITES:
            found.add((bytes.fromhex(randoms[0]), bytes.fromhex(randoms[1]), SUITES[suite]))
    return found


def _key_parts(master: bytes, cr: bytes, sr: bytes, suite: CipherSuite) -> dict[str, bytes]:
    """RFC 5246 §6.3, computed here from the key log's master secret and the public randoms."""
    block = key_block(master, cr, sr, suite.key_block_length, suite.prf_hash)
    keys = split_key_block(suite, block)
    return {part.name: getattr(keys, part.name) for part in key_block_layout(suite)}


def _verify_data_of_recording(recorded: RecordedHandshake, master: bytes) -> list[bytes]:
    """Both Finished messages' verify_data, checked by opening the recorded Finished records:
    proof that the key log, the randoms and the derivation here are right."""
    first_sender = recorded.first_finished_sender
    second_sender = "client" if first_sender == "server" else "server"
    first = recorded.expected_verify_data(master, first_sender)
    second = recorded.expected_verify_data(master, second_sender, Finished(first))
    readers = recorded.record_readers(master)
    records = {
        "client": recorded.client_finished_record,
        "server": recorded.server_finished_record,
    }
    for sender, expected in ((first_sender, first), (second_sender, second)):
        content_type, plaintext = readers[sender].open(records[sender])
        assert content_type is ContentType.handshake
        assert Finished.decode(plaintext).verify_data == expected
    return [first, second]


def _short_values(p: Published) -> tuple[set[bytes], int, int]:
    """Every key-block part and verify_data under 16 bytes the lab's connections derived;
    with the number of connections whose keys and Finished records were checked."""
    short: set[bytes] = set()
    keyed = 0
    for cr, sr, suite in _connections(p):
        master = p.masters.get(cr)
        if master is None:
            continue  # a demo's handshake that never reached its key log line
        keyed += 1
        short |= {v for v in _key_parts(master, cr, sr, suite).values() if 0 < len(v) < SHORT}
    checked = 0
    for obj in (o for v in _json_values(p.texts) for o in _objects(v)):
        if isinstance(obj.get("exchanges"), list) and obj.get("state") == "established":
            recorded = parse_exchanges(obj)
            short |= set(_verify_data_of_recording(recorded, p.masters[recorded.client_random]))
            checked += 1
    # The demos' connections have no recording on client_svc: their verify_data follows from
    # the transcript hash each send_finished step shows (RFC 5246 §7.4.9).
    hashes_shown = set()
    for step in (o for v in _json_values(p.texts) for o in _objects(v)):
        data = step.get("data") if step.get("kind") == StepKind.SEND_FINISHED.value else None
        shown = data.get("transcript_hash") if isinstance(data, dict) else None
        if isinstance(shown, str):
            hashes_shown.add(shown)
    # With REVEAL_SECRETS=1 the services show the values themselves (trace steps, the mismatch
    # demo's "correct" and "broken"): the short ones among them are covered too.
    for obj in (o for v in _json_values(p.texts) for o in _objects(v)):
        revealed = obj.get("secrets")
        for value in revealed.values() if isinstance(revealed, dict) else ():
            if isinstance(value, str) and 0 < len(value) < 2 * SHORT:
                short.add(bytes.fromhex(value))
    for master in p.masters.values():
        for shown in hashes_shown:
            name = "sha384" if len(shown) == 96 else "sha256"
            for sender in ("client", "server"):
                short.add(finished_verify_data(master, sender, bytes.fromhex(shown), name))
    return short, keyed, checked


def _encodings(value: bytes) -> list[str]:
    """How the code writes a SHA-256: full hex (either case), base64, the page's 16-digit prefix,
    tls-lab's first and last four digits."""
    digest = hashlib.sha256(value).digest()
    hex_digest = digest.hex()
    return [
        hex_digest,
        hex_digest.upper(),
        base64.b64encode(digest).decode().rstrip("="),
        base64.urlsafe_b64encode(digest).decode().rstrip("="),
        hex_digest[:16],
        f"{hex_digest[:4]}…{hex_digest[-4:]}",
        f"{hex_digest[:4]}...{hex_digest[-4:]}",
    ]


# -- the tests ---------------------------------------------------------------------------------


def test_no_value_under_16_bytes_has_its_sha256_published_anywhere(published: Published):
    short, keyed, checked = _short_values(published)
    # Not vacuous: every main handshake (13 suites, one resumed) and both tls-lab runs were
    # rebuilt and opened, and the salts, nonce masks and verify_data are among the values.
    assert checked >= len(SUITES) + 1 + 2
    assert keyed >= len(SUITES) + 1 + 2
    lengths = {len(v) for v in short}
    assert {4, 12} <= lengths, lengths
    assert len(short) >= 2 * checked + 2 * 5  # verify_data of each, GCM and ChaCha20 write IVs
    text = "\n".join(published.texts)
    assert '"event":"handshake"' in text.replace(" ", "")  # the services' log lines are in
    leaked = sorted(
        (len(value), value.hex(), shown)
        for value in short
        for shown in _encodings(value)
        if shown in text
    )
    by_length = {n: len({v for m, v, _ in leaked if m == n}) for n, _, _ in leaked}
    assert leaked == [], (
        f"SHA-256 of short values published, values by length {by_length}; e.g. {leaked[:3]}"
    )


def _documented_fingerprint(
    master: bytes, cr: bytes, sr: bytes, prf_hash: str, value: bytes
) -> str:
    """HMAC-SHA256 under the RFC 5705 exporter key of docs/protocol.md §3.8, written out here."""
    key = prf(master, b"EXPERIMENTAL tls-lab fingerprint", cr + sr, 32, prf_hash)
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(value)
    return mac.finalize().hex()


def _step(view: dict[str, Any], action: str) -> dict[str, Any]:
    (found,) = [s for s in view["trace"] if s["action"] == action]
    data: dict[str, Any] = found["data"]
    return data


def test_tls_lab_shows_the_short_keys_by_their_keyed_fingerprints(published: Published):
    chains = [t for t in published.texts if "Derivation chain" in t]
    assert len(chains) == 2  # the GCM and the ChaCha20 run
    gcm, chacha = chains
    assert re.search(r"client_write_iv +4 bytes +hmac [0-9a-f]{4}…[0-9a-f]{4}", gcm), gcm
    assert re.search(r"server_write_iv +12 bytes +hmac [0-9a-f]{4}…[0-9a-f]{4}", chacha), chacha
    assert re.search(r"verify_data hmac [0-9a-f]{4}…[0-9a-f]{4}", gcm), gcm


def test_the_remaining_fingerprints_still_match_between_the_two_sides(published: Published):
    assert len(published.runs) == len(SUITES) + 1
    for answer, client_view, server_view in published.runs:
        assert answer["fingerprints_match"] is True
        assert (
            answer["fingerprints"] == answer["server_fingerprints"] == server_view["fingerprints"]
        )
        # Each key: SHA-256 from 16 bytes up, a keyed fingerprint below, the same on both sides.
        assert client_view["key_block_layout"] == server_view["key_block_layout"]
        assert answer["key_block_layout"] == client_view["key_block_layout"]
        cr, sr = bytes.fromhex(answer["client_random"]), bytes.fromhex(answer["server_random"])
        suite = SUITES[answer["cipher_suite"]]
        master = published.masters[cr]
        parts = _key_parts(master, cr, sr, suite)
        server_split = _step(server_view, "key split")
        for part in answer["key_block_layout"]:
            value = parts[part["name"]]
            if len(value) >= SHORT:
                assert part["sha256"] == hashlib.sha256(value).hexdigest()
                assert part["hmac"] is None
            elif value:
                hmac_hex = _documented_fingerprint(master, cr, sr, suite.prf_hash, value)
                assert (part["sha256"], part["hmac"]) == (None, hmac_hex)
                assert server_split[f"{part['name']}_hmac"] == hmac_hex
                assert server_split[f"{part['name']}_length"] == len(value)
        # Finished: the sender's and the receiver's steps show the same keyed fingerprint.
        for sender, receiver in (("client", server_view), ("server", client_view)):
            sent = _step(
                client_view if sender == "client" else server_view, f"send {sender} Finished"
            )
            received = _step(receiver, f"verify {sender} Finished")
            assert sent["verify_data_hmac"] == received["verify_data_hmac"]
            assert sent["verify_data_length"] == 12 and "verify_data" not in sent
