"""lab_analysis.diagnose on its own, no Flask: the rebuilt transcript it analyses
(lab_analysis.recorded), the mistake catalogue, the eavesdropper."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache

import pytest

from kdf_lib import pki
from kdf_lib.errors import DecodeError
from kdf_lib.handshake import (
    ClientConfig,
    ClientHandshake,
    ServerConfig,
    ServerHandshake,
    Session,
)
from kdf_lib.messages import encode_b64
from kdf_lib.prf import finished_verify_data, prf
from kdf_lib.suites import SUITES, KeyExchange
from kdf_lib.trace import StepKind, Trace, fingerprint, fingerprint_key, keyed_fingerprint
from lab_analysis.diagnose import (
    CATALOGUE,
    DerivationInputs,
    Stage,
    decrypt_recorded_session,
    derive,
    diagnose,
)
from lab_analysis.recorded import HandshakeMessage, RecordedHandshake
from lab_common.contract import CONNECTION_ID_BYTES

RSA_SUITES = sorted(n for n, s in SUITES.items() if s.key_exchange is KeyExchange.RSA)
CONNECTION_ID = "ab" * CONNECTION_ID_BYTES


@lru_cache(maxsize=1)
def identity() -> tuple[pki.Issued, pki.Issued]:
    now = datetime.now(UTC)
    ca = pki.create_ca("Diagnose CA", now=now)
    return ca, pki.issue_server_certificate(ca, "server", now=now)


@lru_cache(maxsize=1)
def ecdsa_leaf() -> pki.IssuedEcdsa:
    """The server's ECDSA certificate, beside the RSA one, for the ECDHE_ECDSA suites."""
    return pki.issue_ecdsa_server_certificate(identity()[0], "server", now=datetime.now(UTC))


@dataclass
class Handshake:
    client: ClientHandshake
    server: ServerHandshake
    recorded: RecordedHandshake

    @property
    def pre_master_secret(self) -> bytes:
        (found,) = {
            s.secrets["pre_master_secret"]
            for s in self.client.trace.steps
            if "pre_master_secret" in s.secrets
        }
        return bytes.fromhex(found)

    def inputs(self) -> DerivationInputs:
        return DerivationInputs.from_recorded(self.recorded, self.pre_master_secret)


def _wire(value: dict) -> dict:
    """As it crosses the wire: JSON text and back."""
    return json.loads(json.dumps(value))


def handshake(
    suite: str, *, ems: bool = True, etm: bool = True, resume: Session | None = None
) -> Handshake:
    """A handshake in memory (full, or abbreviated when ``resume`` is given), recorded as the
    JSON bodies client_svc and server_svc exchange."""
    ca, leaf = identity()
    config = ClientConfig((ca.certificate,), "server", (SUITES[suite],), ems, etm)
    client = ClientHandshake(config, resume=resume, trace=Trace("client"))
    server = ServerHandshake(
        ServerConfig(
            (leaf.certificate,),
            leaf.private_key,
            ecdsa_certificate_chain=(ecdsa_leaf().certificate,),
            ecdsa_private_key=ecdsa_leaf().private_key,
        ),
        lookup_session=lambda sid: resume if resume and resume.session_id == sid else None,
        trace=Trace("server"),
    )
    hello = client.client_hello()
    flight = server.receive_client_hello(hello)
    finish = client.receive_server_flight(flight)
    reply = server.receive_client_finish(finish.client_key_exchange, finish.finished_record)
    if reply:
        client.receive_server_finished(reply)
    recorded = RecordedHandshake.from_json(
        _wire(hello.to_json()),
        _wire({"connection_id": CONNECTION_ID, **flight.to_json()}),
        _wire({"connection_id": CONNECTION_ID, **finish.to_json()}),
        _wire(
            {
                "connection_id": CONNECTION_ID,
                "finished_record": encode_b64(reply) if reply else None,
                "trace": [],
            }
        ),
    )
    return Handshake(client, server, recorded)


def synthetic_inputs(suite: str, ems: bool) -> DerivationInputs:
    """Inputs with made-up but fixed messages: the catalogue needs no real handshake."""

    def blob(label: str, length: int) -> bytes:
        return hashlib.shake_256(label.encode()).digest(length)

    names = ("ClientHello", "ServerHello", "Certificate", "ServerHelloDone", "ClientKeyExchange")
    return DerivationInputs(
        SUITES[suite],
        blob("client random", 32),
        blob("server random", 32),
        ems,
        tuple(HandshakeMessage(n, blob(n, 40)) for n in names),
        blob("pre-master secret", 48),
    )


# -- the rebuilt transcript and the correct derivations ------------------------------------------


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_the_rebuilt_transcript_is_the_one_both_sides_hashed(suite: str):
    run = handshake(suite)
    rebuilt = b"".join(m.encoded for m in run.recorded.handshake_messages())
    finished_messages = 2 * (4 + 12)  # the two Finished messages that end the transcript
    assert run.client.transcript[:-finished_messages] == rebuilt
    assert run.server.transcript[:-finished_messages] == rebuilt
    names = [m.name for m in run.recorded.handshake_messages()]
    assert ("ServerKeyExchange" in names) is (SUITES[suite].key_exchange is not KeyExchange.RSA)


@pytest.mark.parametrize("ems", [True, False])
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_derive_gives_what_the_handshake_derived(suite: str, ems: bool):
    run = handshake(suite, ems=ems)
    inputs = run.inputs()
    fingerprints = run.client.connection.fingerprints()  # type: ignore[union-attr]
    assert fingerprint(derive(inputs, Stage.MASTER_SECRET)) == fingerprints["master_secret"]
    assert fingerprint(derive(inputs, Stage.KEY_BLOCK)) == fingerprints["key_block"]
    (sent,) = [s for s in run.client.trace.steps if s.kind is StepKind.SEND_FINISHED]
    (verified,) = [s for s in run.server.trace.steps if s.kind is StepKind.VERIFY_FINISHED]
    verify_data = derive(inputs, Stage.FINISHED)
    assert verify_data.hex() == sent.secrets["verify_data"]
    # Both ends publish the 12 bytes as one keyed fingerprint, the one the diagnosis computes.
    published = inputs.fingerprint(verify_data)
    assert published == sent.data["verify_data_hmac"] == verified.data["verify_data_hmac"]
    assert "verify_data" not in sent.data and "verify_data_sha256" not in sent.data


def test_a_resumed_handshake_is_recorded_but_refused_for_analysis():
    """It has no key exchange: its master secret comes from a session the wire never showed."""
    first = handshake(RSA_SUITES[0])
    assert first.client.session is not None
    run = handshake(RSA_SUITES[0], resume=first.client.session)
    assert run.recorded.resumed and run.recorded.client_key_exchange is None
    with pytest.raises(DecodeError, match="resumed handshake has no key exchange"):
        DerivationInputs.from_recorded(run.recorded, bytes(48))
    with pytest.raises(DecodeError, match="resumed handshake has no key exchange"):
        decrypt_recorded_session(run.recorded, identity()[1].private_key, b"", b"")


# -- the mistake catalogue ---------------------------------------------------------------------------


@pytest.mark.parametrize("ems", [True, False])
@pytest.mark.parametrize(
    "suite", ["TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]
)
def test_every_catalogued_mistake_is_recognised_as_itself(suite: str, ems: bool):
    inputs = synthetic_inputs(suite, ems)
    tried = 0
    for mistake in CATALOGUE:
        correct = inputs.fingerprint(derive(inputs, mistake.stage))
        for detail, value in mistake.variants(inputs, mistake.stage):
            tried += 1
            found = diagnose(inputs, correct, inputs.fingerprint(value))
            assert (found.stage, found.mistake, found.differing_input, found.detail) == (
                mistake.stage,
                mistake.name,
                mistake.differing_input,
                detail,
            )
    assert tried >= 30


def test_the_four_classic_mistakes_written_by_hand_are_named():
    """Broken values computed here, not by the catalogue, as a student's code would."""
    run = handshake("TLS_RSA_WITH_AES_256_CBC_SHA256", ems=False)
    inputs, pms = run.inputs(), run.pre_master_secret
    cr, sr = inputs.client_random, inputs.server_random
    master = derive(inputs, Stage.MASTER_SECRET)
    without_done = b"".join(
        m.encoded for m in inputs.handshake_messages if m.name != "ServerHelloDone"
    )
    cases = {
        "swapped_randoms": (Stage.MASTER_SECRET, prf(pms, b"master secret", sr + cr, 48)),
        "wrong_label": (Stage.MASTER_SECRET, prf(pms, b"master secrets", cr + sr, 48)),
        "missing_transcript_message": (
            Stage.FINISHED,
            finished_verify_data(master, "client", hashlib.sha256(without_done).digest()),
        ),
        "key_block_seed_order": (
            Stage.KEY_BLOCK,
            prf(master, b"key expansion", cr + sr, inputs.suite.key_block_length),
        ),
    }
    for mistake, (stage, broken) in cases.items():
        found = diagnose(
            inputs, inputs.fingerprint(derive(inputs, stage)), inputs.fingerprint(broken)
        )
        assert (found.stage, found.mistake) == (stage, mistake)
    found = diagnose(
        inputs,
        inputs.fingerprint(derive(inputs, Stage.FINISHED)),
        inputs.fingerprint(
            finished_verify_data(master, "client", hashlib.sha256(without_done).digest())
        ),
    )
    assert found.detail == "ServerHelloDone was left out of the transcript"


@pytest.mark.parametrize("stage", list(Stage))
def test_equal_values_are_diagnosed_as_none(stage: Stage):
    inputs = synthetic_inputs("TLS_RSA_WITH_AES_256_CBC_SHA256", True)
    value = inputs.fingerprint(derive(inputs, stage))
    found = diagnose(inputs, value, value)
    assert (found.stage, found.differing_input, found.mistake) == (stage, "none", None)


def test_a_difference_outside_the_catalogue_is_unknown():
    inputs = synthetic_inputs("TLS_RSA_WITH_AES_256_CBC_SHA256", True)
    other_secret = replace(inputs, pre_master_secret=b"\x03\x03" + bytes(46))
    found = diagnose(
        inputs,
        fingerprint(derive(inputs, Stage.KEY_BLOCK)),
        fingerprint(derive(other_secret, Stage.KEY_BLOCK)),
    )
    assert (found.stage, found.differing_input, found.mistake) == (
        Stage.KEY_BLOCK,
        "unknown",
        None,
    )
    assert found.candidates_tried > 0


def test_an_expected_value_these_inputs_do_not_give_is_unknown():
    inputs = synthetic_inputs("TLS_RSA_WITH_AES_256_CBC_SHA256", True)
    found = diagnose(inputs, "0" * 64, "1" * 64)
    assert (found.stage, found.differing_input) == (None, "unknown")


def test_a_given_stage_is_the_only_one_considered():
    inputs = synthetic_inputs("TLS_RSA_WITH_AES_256_CBC_SHA256", True)
    key_block = fingerprint(derive(inputs, Stage.KEY_BLOCK))
    found = diagnose(inputs, key_block, key_block, stage=Stage.MASTER_SECRET)
    assert (found.stage, found.differing_input) == (Stage.MASTER_SECRET, "unknown")


def test_a_verify_data_fingerprint_is_keyed_by_the_handshake_master_secret():
    """12 bytes get no plain SHA-256 (docs/protocol.md §3.8): the fingerprint the diagnosis
    compares is an HMAC under a key derived from these inputs' master secret."""
    inputs = synthetic_inputs("TLS_RSA_WITH_AES_256_CBC_SHA256", True)
    verify_data = derive(inputs, Stage.FINISHED)
    master = derive(inputs, Stage.MASTER_SECRET)
    key = fingerprint_key(master, inputs.client_random, inputs.server_random, "sha256")
    assert inputs.fingerprint(verify_data) == keyed_fingerprint(key, verify_data)
    assert inputs.fingerprint(verify_data) != hashlib.sha256(verify_data).hexdigest()
    other = replace(inputs, pre_master_secret=b"\x03\x03" + bytes(46))
    assert other.fingerprint(verify_data) != inputs.fingerprint(verify_data)
    with pytest.raises(ValueError, match="keyed_fingerprint"):
        fingerprint(verify_data)
    # The 48-byte master secret keeps its plain SHA-256.
    assert inputs.fingerprint(master) == fingerprint(master) == hashlib.sha256(master).hexdigest()


@pytest.mark.parametrize(
    ("value", "error"), [("AB" * 32, ValueError), ("ab" * 31, ValueError), (b"ab" * 32, TypeError)]
)
def test_fingerprints_must_be_lowercase_sha256_hex(value: object, error: type[Exception]):
    inputs = synthetic_inputs("TLS_RSA_WITH_AES_256_CBC_SHA256", True)
    with pytest.raises(error):
        diagnose(inputs, value, "ab" * 32)  # type: ignore[arg-type]


def test_inputs_keep_the_pre_master_secret_out_of_repr_and_are_checked():
    inputs = synthetic_inputs("TLS_RSA_WITH_AES_256_CBC_SHA256", True)
    assert inputs.pre_master_secret.hex() not in repr(inputs)
    with pytest.raises(ValueError):
        replace(inputs, client_random=bytes(31))
    with pytest.raises(TypeError):
        replace(inputs, pre_master_secret="secret")
    with pytest.raises(ValueError):
        replace(inputs, handshake_messages=())


# -- the passive eavesdropper ------------------------------------------------------------------------


def _exchange(run: Handshake, message: bytes) -> tuple[bytes, bytes]:
    """One message each way on the established pair: the records a recorder would keep."""
    client, server = run.client.connection, run.server.connection
    assert client is not None and server is not None
    sent = client.seal(message)
    answer = server.seal(b"echo: " + server.open(sent))
    client.open(answer)
    return sent, answer


@pytest.mark.parametrize("ems", [True, False])
@pytest.mark.parametrize("suite", RSA_SUITES)
def test_the_server_key_opens_a_recorded_rsa_session(suite: str, ems: bool):
    run = handshake(suite, ems=ems, etm=ems)  # etm on and off for the CBC suites
    sent, answer = _exchange(run, b"transfer 100 EUR to Alice")
    _, leaf = identity()
    result = decrypt_recorded_session(run.recorded, leaf.private_key, sent, answer)
    assert result.decrypted is True
    assert result.client_plaintext == b"transfer 100 EUR to Alice"
    assert result.server_plaintext == b"echo: transfer 100 EUR to Alice"
    assert result.master_secret_sha256 == run.client.connection.fingerprints()["master_secret"]  # type: ignore[union-attr]
    assert "transfer" not in repr(result)


# The eavesdropper holds the RSA certificate's key: the suites that certificate signs.
@pytest.mark.parametrize(
    "suite",
    sorted(n for n, s in SUITES.items() if n not in RSA_SUITES and s.authentication.value == "rsa"),
)
def test_the_server_key_does_not_open_a_recorded_ecdhe_session(suite: str):
    run = handshake(suite)
    sent, answer = _exchange(run, b"transfer 100 EUR to Alice")
    _, leaf = identity()
    result = decrypt_recorded_session(run.recorded, leaf.private_key, sent, answer)
    assert result.decrypted is False
    assert result.client_plaintext is None and result.server_plaintext is None
    assert "ephemeral" in result.why
    assert any("verifies" in finding for finding in result.findings)


def test_another_key_opens_nothing():
    run = handshake("TLS_RSA_WITH_AES_128_GCM_SHA256")
    sent, answer = _exchange(run, b"hello")
    stranger = pki.issue_server_certificate(identity()[0], "server", now=datetime.now(UTC))
    result = decrypt_recorded_session(run.recorded, stranger.private_key, sent, answer)
    assert result.decrypted is False
    assert result.client_plaintext is None


def test_damaged_recorded_records_open_nothing():
    run = handshake("TLS_RSA_WITH_AES_256_CBC_SHA256")
    sent, answer = _exchange(run, b"hello")
    damaged = sent[:-1] + bytes([sent[-1] ^ 1])
    result = decrypt_recorded_session(run.recorded, identity()[1].private_key, damaged, answer)
    assert result.decrypted is False
    assert "do not open" in result.why
