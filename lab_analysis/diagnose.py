"""Offline analysis of a recorded TLS 1.2 handshake, sans-I/O: what the wire alone gives away.

Takes the handshake as lab_analysis.recorded rebuilds it from the wire JSON (docs/protocol.md
§2); recomputes the master secret (RFC 5246 §8.1, RFC 7627 §4), the key block (§6.3) and client
Finished (§7.4.9) and names the input behind a mismatch by trying a catalogue of known mistakes;
and replays the key schedule as a passive eavesdropper holding the server's RSA key would (the
forward-secrecy lesson). Only full handshakes have a key exchange to analyse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from hmac import compare_digest
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from kdf_lib import kex
from kdf_lib.errors import DecryptError, TLSError
from kdf_lib.messages import ClientKeyExchange, Finished, ServerKeyExchange
from kdf_lib.prf import (
    HASHES,
    MASTER_SECRET_LENGTH,
    RANDOM_LENGTH,
    VERIFY_DATA_LENGTH,
    extended_master_secret,
    finished_verify_data,
    key_block,
    master_secret,
    prf,
)
from kdf_lib.record import ContentType
from kdf_lib.role import Role
from kdf_lib.suites import CipherSuite, KeyExchange
from kdf_lib.tickets import TicketKeys
from kdf_lib.trace import MIN_HASHED_LENGTH, fingerprint, fingerprint_key, keyed_fingerprint

from .recorded import (
    ExchangeError,
    HandshakeMessage,
    RecordedHandshake,
    through_client_key_exchange,
    transcript_hash,
)

__all__ = [
    "CATALOGUE",
    "DerivationInputs",
    "Diagnosis",
    "Mistake",
    "PassiveDecryption",
    "Stage",
    "decrypt_recorded_session",
    "decrypt_with_ticket_key",
    "derive",
    "diagnose",
]


class Stage(StrEnum):
    """The three PRF derivations of a full handshake, in the order they happen."""

    MASTER_SECRET = "master_secret"  # noqa: S105 (a stage name, not a password)
    KEY_BLOCK = "key_block"
    FINISHED = "finished"

    @property
    def description(self) -> str:
        """The derivation's output in words, e.g. "key block"."""
        return _STAGE_NAMES[self]


_STAGE_NAMES = {
    Stage.MASTER_SECRET: "master secret",
    Stage.KEY_BLOCK: "key block",
    Stage.FINISHED: "client Finished verify_data",
}


# -- derivations and the mistake catalogue -----------------------------------------------------


@dataclass(frozen=True)
class DerivationInputs:
    """Everything the three derivations of one full handshake take; the secret stays out of repr."""

    suite: CipherSuite
    client_random: bytes
    server_random: bytes
    extended_master_secret: bool
    handshake_messages: tuple[HandshakeMessage, ...]
    pre_master_secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("client_random", "server_random", "pre_master_secret"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"{name} must be bytes")
        for name in ("client_random", "server_random"):
            if len(getattr(self, name)) != RANDOM_LENGTH:
                raise ValueError(f"{name} must be {RANDOM_LENGTH} bytes")
        if not self.pre_master_secret:
            raise ValueError("pre_master_secret must not be empty")
        if not self.handshake_messages:
            raise ValueError("handshake_messages must not be empty")

    @cached_property
    def _fingerprint_key(self) -> bytes:
        return fingerprint_key(
            derive(self, Stage.MASTER_SECRET),
            self.client_random,
            self.server_random,
            self.suite.prf_hash,
        )

    def fingerprint(self, value: bytes) -> str:
        """``value``'s fingerprint as the handshake's two ends publish it (docs/protocol.md
        §3.8): SHA-256 from 16 bytes up, else HMAC-SHA256 under the handshake's fingerprint
        key, which needs the master secret these inputs derive (so for verify_data)."""
        if len(value) >= MIN_HASHED_LENGTH:
            return fingerprint(value)
        return keyed_fingerprint(self._fingerprint_key, value)

    @classmethod
    def from_recorded(
        cls, recorded: RecordedHandshake, pre_master_secret: bytes
    ) -> DerivationInputs:
        """The inputs of a recorded full handshake, with its pre-master secret.

        Raises:
            ExchangeError: the handshake was an abbreviated one (it has no key exchange).
        """
        _key_exchange(recorded)
        return cls(
            recorded.suite,
            recorded.client_random,
            recorded.server_random,
            recorded.extended_master_secret,
            recorded.handshake_messages(),
            pre_master_secret,
        )


def _key_exchange(recorded: RecordedHandshake) -> ClientKeyExchange:
    """The recorded ClientKeyExchange; a resumed handshake reuses a secret the wire never saw."""
    if recorded.client_key_exchange is None:
        raise ExchangeError("a resumed handshake has no key exchange to analyse")
    return recorded.client_key_exchange


def derive(inputs: DerivationInputs, stage: Stage) -> bytes:
    """The correct output of ``stage``, computed with the functions the handshake itself uses."""
    h = inputs.suite.prf_hash
    if stage is Stage.MASTER_SECRET:
        if inputs.extended_master_secret:
            # RFC 7627 §3: through ClientKeyExchange (a CertificateVerify comes after it).
            session_hash = transcript_hash(
                through_client_key_exchange(inputs.handshake_messages), h
            )
            return extended_master_secret(inputs.pre_master_secret, session_hash, h)
        return master_secret(
            inputs.pre_master_secret, inputs.client_random, inputs.server_random, h
        )
    master = derive(inputs, Stage.MASTER_SECRET)
    if stage is Stage.KEY_BLOCK:
        return key_block(
            master, inputs.client_random, inputs.server_random, inputs.suite.key_block_length, h
        )
    covered = transcript_hash(inputs.handshake_messages, h)
    return finished_verify_data(master, Role.CLIENT, covered, h)


def _compute(
    inputs: DerivationInputs,
    stage: Stage,
    *,
    label: bytes | None = None,
    swap_randoms: bool = False,
    messages: Sequence[HandshakeMessage] | None = None,
    hash_name: str | None = None,
    ems: bool | None = None,
) -> bytes:
    """``stage`` as PRF(secret, label, seed) with one input changed: how a mistake is replayed."""
    h = hash_name or inputs.suite.prf_hash
    ems = inputs.extended_master_secret if ems is None else ems
    hashed = inputs.handshake_messages if messages is None else messages
    first, second = inputs.client_random, inputs.server_random
    if swap_randoms:
        first, second = second, first
    if stage is Stage.MASTER_SECRET:
        secret, length = inputs.pre_master_secret, MASTER_SECRET_LENGTH
        if ems:
            session = through_client_key_exchange(hashed)
            default_label, seed = b"extended master secret", transcript_hash(session, h)
        else:
            default_label, seed = b"master secret", first + second
    else:
        secret = derive(inputs, Stage.MASTER_SECRET)
        if stage is Stage.KEY_BLOCK:
            default_label, seed = b"key expansion", second + first
            length = inputs.suite.key_block_length
        else:
            default_label, seed = b"client finished", transcript_hash(hashed, h)
            length = VERIFY_DATA_LENGTH
    return prf(secret, default_label if label is None else label, seed, length, h)


#: Labels that sit next to each other in RFC 5246 and get mixed up.
_NEIGHBOUR_LABELS = {
    b"master secret": (b"extended master secret", b"key expansion"),
    b"extended master secret": (b"master secret",),
    b"key expansion": (b"master secret",),
    b"client finished": (b"server finished",),
}


def _correct_label(inputs: DerivationInputs, stage: Stage) -> bytes:
    if stage is Stage.MASTER_SECRET:
        return b"extended master secret" if inputs.extended_master_secret else b"master secret"
    return b"key expansion" if stage is Stage.KEY_BLOCK else b"client finished"


def _show(label: bytes) -> str:
    return label.decode("ascii", "backslashreplace")


def _wrong_labels(inputs: DerivationInputs, stage: Stage) -> list[tuple[str, bytes]]:
    right = _correct_label(inputs, stage)
    spellings = [
        right + b"s",
        right.title(),
        right.upper(),
        right.replace(b" ", b"_"),
        right.replace(b" ", b"-"),
        right.replace(b" ", b""),
        right + b"\x00",  # sizeof("master secret") in C counts the terminating NUL
        *_NEIGHBOUR_LABELS.get(right, ()),
    ]
    unique = [s for s in dict.fromkeys(spellings) if s != right]
    return [
        (
            f'the label was "{_show(s)}" instead of "{_show(right)}"',
            _compute(inputs, stage, label=s),
        )
        for s in unique
    ]


def _swapped_randoms(inputs: DerivationInputs, stage: Stage) -> list[tuple[str, bytes]]:
    if stage is Stage.MASTER_SECRET and inputs.extended_master_secret:
        return []  # the extended master secret has no randoms in its seed
    if stage is Stage.MASTER_SECRET:
        detail = (
            "the seed was server_random + client_random instead of client_random + server_random"
        )
    else:
        detail = (
            "the seed was client_random + server_random instead of server_random + client_random"
        )
    return [(detail, _compute(inputs, stage, swap_randoms=True))]


def _missing_message(inputs: DerivationInputs, stage: Stage) -> list[tuple[str, bytes]]:
    if stage is Stage.MASTER_SECRET and not inputs.extended_master_secret:
        return []  # the RFC 5246 master secret hashes no transcript
    messages = inputs.handshake_messages
    return [
        (
            f"{left_out.name} was left out of the transcript",
            _compute(inputs, stage, messages=messages[:i] + messages[i + 1 :]),
        )
        for i, left_out in enumerate(messages)
    ]


def _other_formula(inputs: DerivationInputs, stage: Stage) -> list[tuple[str, bytes]]:
    if inputs.extended_master_secret:
        detail = "the RFC 5246 formula was used although extended master secret was negotiated"
    else:
        detail = "the extended master secret formula was used although it was not negotiated"
    return [(detail, _compute(inputs, stage, ems=not inputs.extended_master_secret))]


def _other_hash(inputs: DerivationInputs, stage: Stage) -> list[tuple[str, bytes]]:
    right = inputs.suite.prf_hash
    return [
        (f"the PRF ran with {other} instead of {right}", _compute(inputs, stage, hash_name=other))
        for other in HASHES
        if other != right
    ]


Variants = Callable[[DerivationInputs, Stage], list[tuple[str, bytes]]]


@dataclass(frozen=True)
class Mistake:
    """One known way to get a derivation wrong; ``variants`` replays it on given inputs."""

    name: str
    stage: Stage
    differing_input: str
    rule: str
    variants: Variants


_LABEL_RULE = (
    "The label is PRF input byte for byte (RFC 5246 §5): any other spelling gives unrelated output."
)
_HASH_RULE = "TLS 1.2's PRF uses the suite's hash: SHA-256 unless the suite's name ends in SHA384."

#: The known mistakes, in the order the diagnosis tries them.
CATALOGUE: tuple[Mistake, ...] = (
    Mistake(
        "swapped_randoms",
        Stage.MASTER_SECRET,
        "random_order",
        "RFC 5246 §8.1 seeds the master secret with client_random + server_random.",
        _swapped_randoms,
    ),
    Mistake("wrong_label", Stage.MASTER_SECRET, "label", _LABEL_RULE, _wrong_labels),
    Mistake(
        "missing_transcript_message",
        Stage.MASTER_SECRET,
        "transcript",
        "RFC 7627 §3: the session hash covers every handshake message from ClientHello up to and including ClientKeyExchange.",
        _missing_message,
    ),
    Mistake(
        "wrong_master_secret_formula",
        Stage.MASTER_SECRET,
        "extended_master_secret",
        'RFC 7627 §4: when both hellos carry extended_master_secret, the master secret is PRF(pms, "extended master secret", session_hash); otherwise the RFC 5246 formula applies.',
        _other_formula,
    ),
    Mistake("wrong_prf_hash", Stage.MASTER_SECRET, "prf_hash", _HASH_RULE, _other_hash),
    Mistake(
        "key_block_seed_order",
        Stage.KEY_BLOCK,
        "random_order",
        "RFC 5246 §6.3 seeds the key block with server_random + client_random: the reverse of the master secret, and of what many explanations write.",
        _swapped_randoms,
    ),
    Mistake("wrong_label", Stage.KEY_BLOCK, "label", _LABEL_RULE, _wrong_labels),
    Mistake("wrong_prf_hash", Stage.KEY_BLOCK, "prf_hash", _HASH_RULE, _other_hash),
    Mistake(
        "missing_transcript_message",
        Stage.FINISHED,
        "transcript",
        "RFC 5246 §7.4.9: verify_data hashes every handshake message before this Finished, ServerHelloDone included.",
        _missing_message,
    ),
    Mistake("wrong_label", Stage.FINISHED, "label", _LABEL_RULE, _wrong_labels),
    Mistake("wrong_prf_hash", Stage.FINISHED, "prf_hash", _HASH_RULE, _other_hash),
)


@dataclass(frozen=True)
class Diagnosis:
    """Which input explains a mismatch. ``differing_input`` is ``"none"`` when the two values
    agree and ``"unknown"`` when no mistake in the catalogue reproduces the observed one."""

    stage: Stage | None
    differing_input: str
    explanation: str
    mistake: str | None = None
    detail: str | None = None
    candidates_tried: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": None if self.stage is None else self.stage.value,
            "differing_input": self.differing_input,
            "explanation": self.explanation,
            "mistake": self.mistake,
            "detail": self.detail,
            "candidates_tried": self.candidates_tried,
        }


def _check_fingerprint(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a hex string")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(
            f"{name} must be a SHA-256 or HMAC-SHA256 fingerprint: 64 lowercase hex digits"
        )
    return value


def diagnose(
    inputs: DerivationInputs, expected: str, observed: str, *, stage: Stage | None = None
) -> Diagnosis:
    """Name the input that makes ``observed`` differ from ``expected``.

    Args:
        inputs: the public values of the handshake and its pre-master secret.
        expected: the fingerprint of the correct output (e.g. what the peer derived), as
            :meth:`DerivationInputs.fingerprint` gives it: SHA-256 of a master secret or key
            block, HMAC-SHA256 under the handshake's fingerprint key of a 12-byte verify_data.
        observed: the fingerprint of the output under suspicion, made the same way.
        stage: which derivation the outputs belong to; by default the stage whose correct
            output ``expected`` is.

    Returns:
        The first mistake of :data:`CATALOGUE` that reproduces ``observed``, ``"none"`` if the
        two fingerprints agree, or ``"unknown"`` if nothing explains the difference.

    Raises:
        TypeError, ValueError: a fingerprint is not 64 lowercase hex digits.
    """
    expected = _check_fingerprint(expected, "expected")
    observed = _check_fingerprint(observed, "observed")
    stages = list(Stage) if stage is None else [stage]
    found = next(
        (s for s in stages if compare_digest(inputs.fingerprint(derive(inputs, s)), expected)),
        None,
    )
    if found is None:
        where = "any derivation" if stage is None else f"the {stage.description}"
        return Diagnosis(
            stage,
            "unknown",
            f"The expected value is not {where} of these inputs: the inputs themselves "
            "(pre-master secret, randoms, transcript) are not the ones that produced it.",
        )
    name = found.description
    if compare_digest(expected, observed):
        return Diagnosis(found, "none", f"Both values are the correct {name}: nothing differs.")
    tried = 0
    for mistake in CATALOGUE:
        if mistake.stage is not found:
            continue
        for detail, value in mistake.variants(inputs, found):
            tried += 1
            if compare_digest(inputs.fingerprint(value), observed):
                return Diagnosis(
                    found,
                    mistake.differing_input,
                    f"The {name} differs because {detail}. {mistake.rule} Recomputing it that "
                    f"way reproduces the observed value exactly ({_candidates(tried)} tried).",
                    mistake.name,
                    detail,
                    tried,
                )
    return Diagnosis(
        found,
        "unknown",
        f"No known mistake reproduces the observed {name} ({_candidates(tried)} tried): the "
        "difference lies in an input the catalogue does not vary, such as the pre-master secret.",
        candidates_tried=tried,
    )


def _candidates(count: int) -> str:
    return f"{count} candidate" if count == 1 else f"{count} candidates"


# -- the passive eavesdropper -------------------------------------------------------------------


@dataclass(frozen=True)
class PassiveDecryption:
    """What a recorded session gives up to someone holding the server's private key."""

    decrypted: bool
    why: str
    findings: tuple[str, ...]
    master_secret_sha256: str | None = None
    client_plaintext: bytes | None = field(default=None, repr=False)
    server_plaintext: bytes | None = field(default=None, repr=False)


def decrypt_recorded_session(
    recorded: RecordedHandshake,
    server_private_key: rsa.RSAPrivateKey,
    client_records: bytes,
    server_records: bytes,
) -> PassiveDecryption:
    """Try to open a recorded session's application data with only the wire and the server key.

    ``client_records`` and ``server_records`` are the application-data records each side sent
    after its Finished, in order, laid back to back. With RSA key exchange the key opens the
    pre-master secret and everything follows; with ECDHE or DHE it opens nothing (RFC 8422 §5.10: the
    secret needs an ephemeral private key, and neither was sent or kept).

    Raises:
        ExchangeError: the handshake was an abbreviated one (it has no key exchange).
    """
    cke = _key_exchange(recorded)
    leaf_key = recorded.certificate_chain[0].public_key()
    if (
        not isinstance(leaf_key, rsa.RSAPublicKey)
        or leaf_key.public_numbers() != server_private_key.public_key().public_numbers()
    ):
        return PassiveDecryption(False, "the key does not belong to the recorded certificate", ())
    if recorded.suite.key_exchange is KeyExchange.ECDHE_RSA:
        return _ecdhe_is_out_of_reach(recorded, cke, server_private_key)
    if recorded.suite.key_exchange is KeyExchange.DHE:
        return _dhe_is_out_of_reach(recorded, cke, server_private_key)
    return _replay_rsa_key_schedule(
        recorded, cke, server_private_key, client_records, server_records
    )


def _signature_under_stolen_key(
    recorded: RecordedHandshake, ske: ServerKeyExchange, server_private_key: rsa.RSAPrivateKey
) -> str:
    """How the recorded ServerKeyExchange's signature fares under the stolen key's public half:
    the key authenticated the ephemeral exchange, it never encrypted a secret."""
    try:
        kex.verify_server_params(
            server_private_key.public_key(),
            ske.signature_algorithm,
            ske.signature,
            recorded.client_random,
            recorded.server_random,
            ske.params,
        )
    except DecryptError:
        return "does not verify"
    return "verifies with the stolen key's public half"


def _ecdhe_is_out_of_reach(
    recorded: RecordedHandshake, cke: ClientKeyExchange, server_private_key: rsa.RSAPrivateKey
) -> PassiveDecryption:
    ske = recorded.server_flight.server_key_exchange
    client_public = cke.public_key
    # RecordedHandshake refuses an ECDHE handshake that lacks either.
    assert ske is not None and client_public is not None
    signature = _signature_under_stolen_key(recorded, ske, server_private_key)
    findings = (
        f"ServerKeyExchange holds only the server's ephemeral {ske.group.name} public key "
        f"({len(ske.public_key)} bytes) and an RSA signature over it, which {signature}: "
        "the certificate key authenticated the server, it never encrypted a secret",
        f"ClientKeyExchange holds only the client's ephemeral public key ({len(client_public)} bytes)",
        "the pre-master secret is ECDH(one side's ephemeral private key, the other's public key); "
        "no private key ever crossed the wire, server_svc dropped its ephemeral key right after "
        "ClientKeyExchange and the client never stored its own",
    )
    return PassiveDecryption(
        False,
        f"ECDHE ({ske.group.name}): the recording holds two public keys and a signature; the "
        "server's RSA key only signed, so it recovers nothing. The ephemeral private keys that "
        "could compute the pre-master secret were discarded after the handshake: forward secrecy.",
        findings,
    )


def _dhe_is_out_of_reach(
    recorded: RecordedHandshake, cke: ClientKeyExchange, server_private_key: rsa.RSAPrivateKey
) -> PassiveDecryption:
    ske = recorded.server_flight.server_key_exchange
    client_public = cke.dh_public
    # RecordedHandshake refuses a DHE handshake that lacks either.
    assert ske is not None and client_public is not None
    signature = _signature_under_stolen_key(recorded, ske, server_private_key)
    findings = (
        f"ServerKeyExchange holds the {ske.group.name} prime and generator (RFC 7919), the "
        f"server's ephemeral public value g^x mod p ({len(ske.public_key)} bytes) and an RSA "
        f"signature over them, which {signature}: the certificate key authenticated the server, "
        "it never encrypted a secret",
        f"ClientKeyExchange holds only the client's public value g^y mod p ({len(client_public)} "
        "bytes)",
        "the pre-master secret is g^xy mod p: computing it from g^x and g^y is the discrete "
        "logarithm problem; server_svc dropped x right after ClientKeyExchange and the client "
        "never stored y",
    )
    return PassiveDecryption(
        False,
        f"DHE ({ske.group.name}): the recording holds two public values and a signature; the "
        "server's RSA key only signed, so it recovers nothing. The ephemeral exponents that "
        "could compute the pre-master secret were discarded after the handshake: forward secrecy.",
        findings,
    )


def _replay_rsa_key_schedule(
    recorded: RecordedHandshake,
    cke: ClientKeyExchange,
    server_private_key: rsa.RSAPrivateKey,
    client_records: bytes,
    server_records: bytes,
) -> PassiveDecryption:
    encrypted = cke.encrypted_pre_master_secret
    assert encrypted is not None  # RecordedHandshake refuses an RSA handshake without it
    # A wrong key would give the random fallback here; the Finished check below tells.
    pms = kex.rsa_decrypt_pre_master_secret(server_private_key, encrypted)
    inputs = DerivationInputs.from_recorded(recorded, pms)
    master = derive(inputs, Stage.MASTER_SECRET)
    readers = recorded.record_readers(master)
    from_client, from_server = readers[Role.CLIENT], readers[Role.SERVER]
    formula = (
        "extended master secret over the rebuilt transcript"
        if inputs.extended_master_secret
        else "client_random + server_random"
    )
    findings = [
        f"ClientKeyExchange holds the pre-master secret RSA-encrypted to the certificate key "
        f"({len(encrypted)} bytes); the stolen key opens it (sha256 {fingerprint(pms)})",
        f"master secret = PRF(pms, {formula}) (sha256 {fingerprint(master)}); key block and "
        f"the six keys follow from the recorded randoms",
    ]
    try:
        content_type, plaintext = from_client.open(recorded.client_finished_record)
        client_finished = Finished.decode(plaintext)
        expected = derive(inputs, Stage.FINISHED)
        if content_type is not ContentType.handshake or not compare_digest(
            client_finished.verify_data, expected
        ):
            raise DecryptError("client Finished does not verify")
        from_server.open(recorded.server_finished_record)
        client_data = _application_data(from_client.open_many(client_records))
        server_data = _application_data(from_server.open_many(server_records))
    except TLSError:
        return PassiveDecryption(
            False,
            "the recorded records do not open with keys derived from this key",
            tuple(findings),
        )
    findings.append(
        "the recorded client Finished opens and its verify_data matches: the rebuilt keys are "
        "exactly the ones both sides used"
    )
    findings.append(
        f"opened {len(client_data)} bytes the client sent and {len(server_data)} bytes the "
        "server answered"
    )
    return PassiveDecryption(
        True,
        "RSA key exchange: the pre-master secret crossed the wire encrypted to the server's "
        "long-term key, so whoever gets that key later decrypts every recorded session.",
        tuple(findings),
        fingerprint(master),
        client_data,
        server_data,
    )


def _application_data(opened: list[tuple[ContentType, bytes]]) -> bytes:
    if any(content_type is not ContentType.application_data for content_type, _ in opened):
        raise DecryptError("expected application data records")
    return b"".join(plaintext for _, plaintext in opened)


def decrypt_with_ticket_key(
    recorded: RecordedHandshake,
    ticket_keys: TicketKeys,
    client_records: bytes,
    server_records: bytes,
) -> PassiveDecryption:
    """Try to open a recorded session with the server's session-ticket key (RFC 5077).

    A ticket carries its session's master secret, sealed under the ticket key, and it crosses
    the wire in clear: in the ClientHello that resumes with it, and in the NewSessionTicket
    that issued it. So whoever holds the ticket key opens every recorded session whose ticket
    it sealed, ECDHE ones included: forward secrecy lasts only as long as the ticket key does
    (RFC 5077 §5.5 asks for keys to be rotated for that reason).
    """
    presented = recorded.client_hello.extensions.session_ticket
    if recorded.resumed and presented:
        ticket, where = presented, "the resuming ClientHello's session_ticket extension"
    elif recorded.new_session_ticket is not None:
        ticket, where = recorded.new_session_ticket.ticket, "the server's NewSessionTicket"
    else:
        return PassiveDecryption(False, "no ticket crossed the wire in this handshake", ())
    state = ticket_keys.open(ticket)
    if state is None:
        return PassiveDecryption(
            False, "the ticket does not open under this key (rotated out, or another key)", ()
        )
    master = state.master_secret
    findings = [
        f"the ticket ({len(ticket)} bytes) is in {where}, in clear; its key name "
        f"{ticket[:16].hex()} says which key sealed it",
        f"opened, it holds the session's master secret (sha256 {fingerprint(master)}) and suite "
        f"{state.suite.name}: the key block and the six keys follow from the recorded randoms",
    ]
    readers = recorded.record_readers(master)
    from_client, from_server = readers[Role.CLIENT], readers[Role.SERVER]
    try:
        from_client.open(recorded.client_finished_record)
        from_server.open(recorded.server_finished_record)
        client_data = _application_data(from_client.open_many(client_records))
        server_data = _application_data(from_server.open_many(server_records))
    except TLSError:
        return PassiveDecryption(False, "the records do not open with this ticket's secret", ())
    return PassiveDecryption(
        True,
        "the ticket key opened the ticket, and the ticket the session",
        tuple(findings),
        fingerprint(master),
        client_data,
        server_data,
    )
