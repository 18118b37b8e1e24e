"""lab_analysis.recorded: handshakes recorded from real client_svc/server_svc runs, rebuilt from
their JSON, hash to exactly what both live machines hashed; malformed recordings are refused.

The expected values come from the services' own traces (REVEAL_SECRETS on the client for the
secrets): transcript hashes, the session hash, verify_data, the master secret and key block.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from helpers.transport import FlaskTransport
from hypothesis import given, settings
from hypothesis import strategies as st

from client_svc import create_app as create_client_app
from kdf_lib import pki
from kdf_lib.errors import DecodeError
from kdf_lib.handshake import ServerConfig
from kdf_lib.messages import Finished
from kdf_lib.record import ContentType
from kdf_lib.trace import StepKind, fingerprint, fingerprint_key, keyed_fingerprint
from lab_analysis.recorded import (
    ExchangeError,
    RecordedHandshake,
    parse_exchanges,
    transcript_hash,
)
from lab_common.contract import (
    CONNECTION_ID_BYTES,
    CONNECTION_ID_LENGTH,
    FINISH,
    HANDSHAKE,
    HELLO,
    SESSION,
    path,
)
from server_svc import create_app as create_server_app

FULL_NAMES = ["ClientHello", "ServerHello", "Certificate", "ServerHelloDone", "ClientKeyExchange"]


@dataclass
class Run:
    """client_svc's POST /handshake answer and its GET /sessions/<id> view (with exchanges)."""

    answer: dict[str, Any]
    view: dict[str, Any]

    def step(self, actor: str, kind: StepKind) -> dict[str, Any]:
        found: dict[str, Any] = next(
            s for s in self.answer["trace"] if s["actor"] == actor and s["kind"] == kind.value
        )
        return found

    @property
    def master_secret(self) -> bytes:
        return bytes.fromhex(self.answer["secrets"]["master_secret"])

    @property
    def pre_master_secret(self) -> bytes:
        (found,) = {
            s["secrets"]["pre_master_secret"]
            for s in self.answer["trace"]
            if s["actor"] == "client" and "pre_master_secret" in (s.get("secrets") or {})
        }
        return bytes.fromhex(found)


class Lab:
    """client_svc (revealing its secrets) wired in-process to server_svc."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        ca = pki.create_ca("Recorded CA", now=now)
        leaf = pki.issue_server_certificate(ca, "server", now=now)
        server = create_server_app(
            {"SERVER_CONFIG": ServerConfig((leaf.certificate,), leaf.private_key), "TESTING": True}
        ).test_client()
        self.client = create_client_app(
            {
                "TRUST_ANCHORS": (ca.certificate,),
                "TRANSPORT": FlaskTransport(server),
                "SERVER_NAME": "server",
                "TESTING": True,
                "REVEAL_SECRETS": True,
            }
        ).test_client()

    def run(self, **body: object) -> Run:
        answer = self.client.post(HANDSHAKE, json=body).get_json()
        assert "connection_id" in answer, answer
        view = self.client.get(path(SESSION, answer["connection_id"])).get_json()
        return Run(answer, view)


@pytest.fixture(scope="module")
def lab() -> Lab:
    return Lab()


@pytest.fixture(scope="module")
def rsa_run(lab: Lab) -> Run:
    return lab.run(key_exchange="rsa")


@pytest.fixture(scope="module")
def ecdhe_run(lab: Lab) -> Run:
    return lab.run(key_exchange="ecdhe")


@pytest.fixture(scope="module")
def resumed_run(lab: Lab, ecdhe_run: Run) -> Run:
    return lab.run(resume=ecdhe_run.answer["session_id"])


@pytest.fixture(scope="module")
def runs(rsa_run: Run, ecdhe_run: Run, resumed_run: Run) -> dict[str, Run]:
    return {"rsa": rsa_run, "ecdhe": ecdhe_run, "resumed": resumed_run}


def exchange(view: dict[str, Any], at: str) -> dict[str, Any]:
    """The recorded exchange with the request path ``at``."""
    found: dict[str, Any] = next(e for e in view["exchanges"] if e["request"]["path"] == at)
    return found


def raw(messages: Any) -> bytes:
    return b"".join(m.encoded for m in messages)


# -- full handshakes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"key_exchange": "rsa"},
        {"key_exchange": "ecdhe"},
        {"cipher_suite": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
        {"cipher_suite": "TLS_RSA_WITH_AES_256_CBC_SHA256", "extended_master_secret": False},
        {"cipher_suite": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "encrypt_then_mac": False},
    ],
    ids=["rsa", "ecdhe", "sha384", "no-ems", "no-etm"],
)
def test_a_full_handshake_hashes_to_what_both_services_hashed(
    lab: Lab, body: dict[str, Any]
) -> None:
    run = lab.run(**body)
    answer = run.answer
    hs = parse_exchanges(run.view)
    h = hs.suite.prf_hash

    assert hs.connection_id == answer["connection_id"]
    assert hs.suite.name == answer["cipher_suite"]
    assert hs.client_random.hex() == answer["client_random"]
    assert hs.server_random.hex() == answer["server_random"]
    assert hs.session_id.hex() == answer["session_id"]
    assert hs.extended_master_secret is answer["extended_master_secret"]
    assert hs.encrypt_then_mac is answer["encrypt_then_mac"]
    assert hs.resumed is False and hs.first_finished_sender == "client"
    ecdhe = answer["key_exchange"] == "ecdhe"
    names = [m.name for m in hs.handshake_messages()]
    assert names == FULL_NAMES[:3] + ["ServerKeyExchange"] * ecdhe + FULL_NAMES[3:]

    # The client Finished covers ClientHello..ClientKeyExchange: byte for byte what the server
    # held when it verified it, and hashed with the suite's PRF hash as the client sent it.
    client_covers = hs.finished_messages("client")
    verified = run.step("server", StepKind.VERIFY_FINISHED)["data"]
    assert fingerprint(raw(client_covers)) == verified["transcript_sha256"]
    sent = run.step("client", StepKind.SEND_FINISHED)["data"]
    assert transcript_hash(client_covers, h).hex() == sent["transcript_hash"]
    if hs.extended_master_secret:
        for side in ("client", "server"):
            step = run.step(side, StepKind.EXTENDED_MASTER_SECRET)["data"]
            assert hs.session_hash().hex() == step["session_hash"]

    # The server Finished also covers the client Finished message (its verify_data is shown
    # only by the revealing client; the server's step has its keyed fingerprint).
    client_sent = run.step("client", StepKind.SEND_FINISHED)["secrets"]
    client_finished = Finished(bytes.fromhex(client_sent["verify_data"]))
    server_covers = hs.finished_messages("server", client_finished)
    assert [m.name for m in server_covers] == [*names, "client Finished"]
    assert (
        fingerprint(raw(server_covers))
        == (run.step("client", StepKind.VERIFY_FINISHED)["data"]["transcript_sha256"])
    )
    server_sent = run.step("server", StepKind.SEND_FINISHED)["data"]
    assert transcript_hash(server_covers, h).hex() == server_sent["transcript_hash"]

    # With the master secret, both verify_data values follow, so do their keyed fingerprints
    # on both sides, and both records open.
    master = run.master_secret
    key = fingerprint_key(master, hs.client_random, hs.server_random, h)
    assert hs.expected_verify_data(master, "client") == client_finished.verify_data
    client_hmac = keyed_fingerprint(key, client_finished.verify_data)
    assert client_hmac == sent["verify_data_hmac"] == verified["verify_data_hmac"]
    server_vd = hs.expected_verify_data(master, "server", client_finished)
    assert keyed_fingerprint(key, server_vd) == server_sent["verify_data_hmac"]
    server_verified = run.step("client", StepKind.VERIFY_FINISHED)
    assert server_verified["secrets"]["verify_data"] == server_vd.hex()
    assert "verify_data" not in sent and "verify_data" not in server_sent
    readers = hs.record_readers(master)
    for sender, record, expected in (
        ("client", hs.client_finished_record, client_finished.verify_data),
        ("server", hs.server_finished_record, server_vd),
    ):
        content_type, plaintext = readers[sender].open(record)
        assert content_type is ContentType.handshake
        assert Finished.decode(plaintext).verify_data == expected


@pytest.mark.parametrize("kx", ["rsa", "ecdhe"])
def test_the_key_schedule_follows_from_the_pre_master_secret(runs: dict[str, Run], kx: str) -> None:
    """What the forward-secrecy demo needs: given the PMS, the wire data gives everything else."""
    run = runs[kx]
    hs = parse_exchanges(run.view)
    master = hs.derive_master_secret(run.pre_master_secret)
    assert master == run.master_secret
    block, keys = hs.key_material(master)
    assert fingerprint(block) == run.answer["fingerprints"]["key_block"]
    assert keys.client_write_key.hex() == run.answer["secrets"]["client_write_key"]
    assert keys.server_write_key.hex() == run.answer["secrets"]["server_write_key"]


def test_the_four_bodies_and_the_session_view_decode_alike(rsa_run: Run) -> None:
    view = rsa_run.view
    hello, finish = exchange(view, HELLO), exchange(view, FINISH)
    from_bodies = RecordedHandshake.from_json(
        hello["request"]["body"], hello["response"], finish["request"]["body"], finish["response"]
    )
    assert from_bodies == parse_exchanges(view) == parse_exchanges(view["exchanges"])
    assert from_bodies.connection_id == view["connection_id"]
    (leaf,) = from_bodies.certificate_chain
    assert (
        leaf.subject.rfc4514_string()
        == rsa_run.step("client", StepKind.VERIFY_CERTIFICATE)["data"]["subject"]
    )


def test_encrypt_then_mac_stays_off_with_an_aead_suite(ecdhe_run: Run) -> None:
    """RFC 7366 §3 applies encrypt-then-MAC to CBC suites only, whatever a ServerHello claims."""
    view = copy.deepcopy(ecdhe_run.view)
    extensions = exchange(view, HELLO)["response"]["extensions"]
    assert extensions["encrypt_then_mac"] is False  # what server_svc sent
    extensions["encrypt_then_mac"] = True
    hs = parse_exchanges(view)
    assert hs.suite.is_aead
    assert hs.server_flight.server_hello.extensions.encrypt_then_mac is True
    assert hs.encrypt_then_mac is False


# -- resumed handshakes ----------------------------------------------------------------------


def test_a_resumed_handshake_hashes_to_what_both_services_hashed(
    resumed_run: Run, ecdhe_run: Run
) -> None:
    run = resumed_run
    hs = parse_exchanges(run.view)
    h = hs.suite.prf_hash
    assert hs.resumed is True and run.answer["resumed"] is True
    assert hs.first_finished_sender == "server"
    assert hs.session_id.hex() == ecdhe_run.answer["session_id"]
    assert hs.certificate_chain == () and hs.client_key_exchange is None
    assert [m.name for m in hs.handshake_messages()] == ["ClientHello", "ServerHello"]

    # The server speaks first, over the two hellos.
    server_covers = hs.finished_messages("server")
    assert (
        fingerprint(raw(server_covers))
        == (run.step("client", StepKind.VERIFY_FINISHED)["data"]["transcript_sha256"])
    )
    server_sent = run.step("server", StepKind.SEND_FINISHED)["data"]
    assert transcript_hash(server_covers, h).hex() == server_sent["transcript_hash"]

    # The client, which reveals its secrets, shows the verify_data it received and checked.
    server_verified = run.step("client", StepKind.VERIFY_FINISHED)["secrets"]
    server_finished = Finished(bytes.fromhex(server_verified["verify_data"]))
    client_covers = hs.finished_messages("client", server_finished)
    assert [m.name for m in client_covers] == ["ClientHello", "ServerHello", "server Finished"]
    assert (
        fingerprint(raw(client_covers))
        == (run.step("server", StepKind.VERIFY_FINISHED)["data"]["transcript_sha256"])
    )
    client_sent = run.step("client", StepKind.SEND_FINISHED)["data"]
    assert transcript_hash(client_covers, h).hex() == client_sent["transcript_hash"]

    # The session's master secret, unchanged, with the new randoms.
    master = run.master_secret
    assert master == ecdhe_run.master_secret
    key = fingerprint_key(master, hs.client_random, hs.server_random, h)
    assert hs.expected_verify_data(master, "server") == server_finished.verify_data
    assert keyed_fingerprint(key, server_finished.verify_data) == server_sent["verify_data_hmac"]
    client_vd = hs.expected_verify_data(master, "client", server_finished)
    assert keyed_fingerprint(key, client_vd) == client_sent["verify_data_hmac"]
    assert run.step("client", StepKind.SEND_FINISHED)["secrets"]["verify_data"] == client_vd.hex()
    readers = hs.record_readers(master)
    _, plaintext = readers["server"].open(hs.server_finished_record)
    assert Finished.decode(plaintext) == server_finished
    _, plaintext = readers["client"].open(hs.client_finished_record)
    assert Finished.decode(plaintext).verify_data == client_vd


def test_a_resumed_handshake_has_no_key_exchange_to_derive_from(resumed_run: Run) -> None:
    hs = parse_exchanges(resumed_run.view)
    with pytest.raises(ValueError, match="no session hash"):
        hs.session_hash()
    with pytest.raises(ValueError, match="reuses the session's master secret"):
        hs.derive_master_secret(bytes(48))
    with pytest.raises(ValueError, match="covers the server Finished: pass it in"):
        hs.finished_messages("client")
    with pytest.raises(ValueError, match="sender must be"):
        hs.finished_messages("mitm")


# -- malformed recordings --------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], Any]


def _set(at: str, key: str, value: object, *, part: str = "response") -> Mutation:
    """Set ``key`` in the request body or the response of the exchange at ``at``."""

    def mutate(view: dict[str, Any]) -> dict[str, Any]:
        e = exchange(view, at)
        (e["request"]["body"] if part == "request" else e["response"])[key] = value
        return view

    return mutate


def _drop(at: str, key: str, *, part: str = "response") -> Mutation:
    def mutate(view: dict[str, Any]) -> dict[str, Any]:
        e = exchange(view, at)
        del (e["request"]["body"] if part == "request" else e["response"])[key]
        return view

    return mutate


def _without_exchange(at: str) -> Mutation:
    def mutate(view: dict[str, Any]) -> dict[str, Any]:
        view["exchanges"] = [e for e in view["exchanges"] if e["request"]["path"] != at]
        return view

    return mutate


def _twice(at: str) -> Mutation:
    def mutate(view: dict[str, Any]) -> dict[str, Any]:
        view["exchanges"].append(copy.deepcopy(exchange(view, at)))
        return view

    return mutate


def _in_exchange(at: str, mutate_exchange: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(view: dict[str, Any]) -> dict[str, Any]:
        mutate_exchange(exchange(view, at))
        return view

    return mutate


MALFORMED: dict[str, tuple[str, Mutation, str]] = {
    "a string": ("rsa", lambda v: "exchanges", r"no 'exchanges' list"),
    "null": ("rsa", lambda v: None, r"no 'exchanges' list"),
    "exchanges not a list": ("rsa", lambda v: {**v, "exchanges": {}}, r"no 'exchanges' list"),
    "no hello": ("rsa", _without_exchange(HELLO), rf"one {HELLO} exchange, found 0"),
    "two finishes": ("rsa", _twice(FINISH), rf"one {FINISH} exchange, found 2"),
    "no request body": (
        "rsa",
        _in_exchange(FINISH, lambda e: e["request"].pop("body")),
        rf"{FINISH} exchange has no request body",
    ),
    "unfinished": (
        "rsa",
        _in_exchange(FINISH, lambda e: e.pop("response")),
        r"no response: the handshake did not finish",
    ),
    "short client_random": (
        "rsa",
        _set(HELLO, "client_random", "00", part="request"),
        r"the hello request \(ClientHello\) does not decode",
    ),
    "unknown suite": (
        "rsa",
        _set(HELLO, "cipher_suite", "TLS_NULL_WITH_NULL_NULL"),
        r"the hello response \(ServerHello flight\) does not decode: .*unknown cipher suite",
    ),
    "unknown field": (
        "rsa",
        _set(HELLO, "compression", "deflate"),
        r"hello response \(ServerHello flight\) does not decode: unknown field",
    ),
    "resumed without Finished": (
        "rsa",
        _set(HELLO, "resumed", True),
        r"hello response \(ServerHello flight\) does not decode",
    ),
    "not a certificate": (
        "rsa",
        _set(HELLO, "certificate_chain", ["-----BEGIN CERTIFICATE-----\nAA==\n"]),
        r"the certificate chain does not decode",
    ),
    "no certificate": (
        "rsa",
        _set(HELLO, "certificate_chain", []),
        r"full handshake's hello response has no certificate",
    ),
    "no ClientKeyExchange": (
        "rsa",
        _drop(FINISH, "client_key_exchange", part="request"),
        r"full handshake's finish request has no ClientKeyExchange",
    ),
    "ECDH key for an RSA suite": (
        "rsa",
        _set(FINISH, "client_key_exchange", {"public_key": "04" * 65}, part="request"),
        r"needs encrypted_pre_master_secret in ClientKeyExchange",
    ),
    "ECDHE without ServerKeyExchange": (
        "ecdhe",
        _drop(HELLO, "server_key_exchange"),
        r"needs a ServerKeyExchange; there is none",
    ),
    "RSA key for an ECDHE suite": (
        "ecdhe",
        _set(
            FINISH,
            "client_key_exchange",
            {"encrypted_pre_master_secret": "AAAA"},
            part="request",
        ),
        r"needs the client's public_key in ClientKeyExchange",
    ),
    "client Finished not base64": (
        "rsa",
        _set(FINISH, "finished_record", "not base64!", part="request"),
        r"the finish request \(client Finished\) does not decode",
    ),
    "no server Finished": (
        "rsa",
        _set(FINISH, "finished_record", None),
        r"the finish response's finished_record does not decode",
    ),
    "connection_id not a string": (
        "rsa",
        _set(HELLO, "connection_id", 42),
        r"the hello response's connection_id is not a string",
    ),
    "connection_id in capitals": (
        "rsa",
        _set(FINISH, "connection_id", "AB" * CONNECTION_ID_BYTES),
        rf"the finish response's connection_id is not a string of {CONNECTION_ID_LENGTH} lowercase",
    ),
    "the view's connection_id a path": (
        "rsa",
        lambda v: {**v, "connection_id": "../" + v["connection_id"]},
        rf"the session's connection_id is not a string of {CONNECTION_ID_LENGTH} lowercase",
    ),
    "two connections": (
        "rsa",
        _set(FINISH, "connection_id", "ab" * CONNECTION_ID_BYTES, part="request"),
        r"belong to different connections",
    ),
    "the view names another connection": (
        "rsa",
        lambda v: {**v, "connection_id": "cd" * CONNECTION_ID_BYTES},
        r"belong to different connections",
    ),
    "resumed with a ClientKeyExchange": (
        "resumed",
        _set(FINISH, "client_key_exchange", {"public_key": "04" * 65}, part="request"),
        r"a resumed handshake carries no ClientKeyExchange",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_recording_is_refused_with_exchange_error(
    runs: dict[str, Run], case: str
) -> None:
    base, mutate, message = MALFORMED[case]
    view = copy.deepcopy(runs[base].view)
    source = mutate(view)
    with pytest.raises(ExchangeError, match=message) as caught:
        parse_exchanges(source)
    # Both kinds of caller catch it: tools as a ValueError, the services as decode_error.
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, DecodeError) and caught.value.code == "decode_error"


def test_a_resumed_flight_with_a_certificate_is_refused(resumed_run: Run, rsa_run: Run) -> None:
    view = copy.deepcopy(resumed_run.view)
    chain = exchange(rsa_run.view, HELLO)["response"]["certificate_chain"]
    exchange(view, HELLO)["response"]["certificate_chain"] = chain
    with pytest.raises(ExchangeError, match="carries no Certificate or ServerKeyExchange"):
        parse_exchanges(view)


def test_an_rsa_flight_with_a_server_key_exchange_is_refused(rsa_run: Run, ecdhe_run: Run) -> None:
    view = copy.deepcopy(rsa_run.view)
    ske = exchange(ecdhe_run.view, HELLO)["response"]["server_key_exchange"]
    exchange(view, HELLO)["response"]["server_key_exchange"] = ske
    with pytest.raises(ExchangeError, match="has no ServerKeyExchange; there is one"):
        parse_exchanges(view)


@pytest.mark.parametrize("which", range(4))
def test_a_body_that_is_not_an_object_is_refused(rsa_run: Run, which: int) -> None:
    hello, finish = exchange(rsa_run.view, HELLO), exchange(rsa_run.view, FINISH)
    bodies: list[object] = [
        hello["request"]["body"],
        hello["response"],
        finish["request"]["body"],
        finish["response"],
    ]
    bodies[which] = ["not", "an", "object"]
    with pytest.raises(ExchangeError, match=r"(not a JSON object|must be a JSON object)"):
        RecordedHandshake.from_json(*bodies)


# Anything at all in place of any part of the recorded bodies: parsed, or ExchangeError.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the recorded bodies, the teaching aids (trace, fingerprints) left out."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in ("trace", "fingerprints"):
                out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_paths(item, (*prefix, index)))
    return out


@pytest.mark.parametrize("base", ["rsa", "ecdhe", "resumed"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_damage_to_a_recording_parses_or_raises_exchange_error(
    runs: dict[str, Run], base: str, data: st.DataObject
) -> None:
    view = copy.deepcopy(runs[base].view)
    source = {"connection_id": view["connection_id"], "exchanges": view["exchanges"]}
    place = data.draw(st.sampled_from(_paths(source)[1:]))
    *parents, last = place
    container: Any = source
    for key in parents:
        container = container[key]
    if data.draw(st.booleans(), label="delete") and isinstance(container, dict):
        del container[last]
    else:
        container[last] = data.draw(JSON_VALUES, label="value")
    try:
        hs = parse_exchanges(source)
    except ExchangeError:
        return
    # What parses is consistent enough to rebuild the transcript and both Finished inputs.
    assert hs.handshake_messages()[0].name == "ClientHello"
    hs.finished_messages(hs.first_finished_sender)
