"""The step trace: what each side of a handshake did and why, as public teaching data.

Not part of TLS. Secrets appear only as their length and fingerprint (RFC 5705 §4 exporter
keys for short ones; docs/protocol.md §3.8), and steps carry a stable kind (§1.7).
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, hmac

from .prf import prf
from .role import Role

__all__ = [
    "DATA_FLIGHT",
    "FINGERPRINT_KEY_LABEL",
    "FINGERPRINT_KEY_LENGTH",
    "MAX_TRACED_DATA_STEPS",
    "MIN_HASHED_LENGTH",
    "NullTrace",
    "Step",
    "StepKind",
    "Trace",
    "compact_json",
    "fingerprint",
    "fingerprint_fields",
    "fingerprint_key",
    "fingerprint_kind",
    "keyed_fingerprint",
]


# -- fingerprints: how a secret appears in public data -------------------------------------
#
# A published SHA-256 lets two sides compare a value without showing it, but only while trying
# every possible value is out of reach: the 4-byte GCM salts were recovered from theirs in
# minutes. Below 16 bytes (128 bits, the strength of the lab's weakest cipher key) a value is
# fingerprinted with HMAC-SHA256 under a key only the connection's two ends can derive, and
# where that key is unknown only its length is shown. docs/protocol.md §3.8 has the rules.

#: The shortest value whose plain SHA-256 may be published.
MIN_HASHED_LENGTH = 16
#: RFC 5705 §4: labels beginning with "EXPERIMENTAL" are for private use without registration.
FINGERPRINT_KEY_LABEL = b"EXPERIMENTAL tls-lab fingerprint"
FINGERPRINT_KEY_LENGTH = 32


def fingerprint(value: bytes) -> str:
    """SHA-256 of a value of 16 bytes or more, hex: lets two sides compare values without
    showing them.

    Raises:
        ValueError: ``value`` is shorter than :data:`MIN_HASHED_LENGTH`; its SHA-256 would give
            it away to anyone who hashes every candidate (use :func:`keyed_fingerprint`).
    """
    if len(value) < MIN_HASHED_LENGTH:
        raise ValueError(
            f"a {len(value)}-byte value must not get a plain SHA-256 fingerprint: "
            "use keyed_fingerprint"
        )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(value)
    return digest.finalize().hex()


def fingerprint_key(
    master: bytes, client_random: bytes, server_random: bytes, prf_hash: str
) -> bytes:
    """A connection's fingerprint key: the RFC 5705 exporter value
    ``PRF(master_secret, "EXPERIMENTAL tls-lab fingerprint", client_random + server_random)[0..31]``.

    Both ends hold the master secret, so both derive the same key; nobody else can.
    """
    return prf(
        master,
        FINGERPRINT_KEY_LABEL,
        client_random + server_random,
        FINGERPRINT_KEY_LENGTH,
        prf_hash,
    )


def keyed_fingerprint(key: bytes, value: bytes) -> str:
    """HMAC-SHA256(key, value), hex: a fingerprint of a short value that only holders of
    ``key`` (see :func:`fingerprint_key`) can recompute or test guesses against."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(value)
    return mac.finalize().hex()


def fingerprint_kind(length: int) -> str:
    """``"sha256"`` for a value of ``length`` bytes that may be hashed plainly, else ``"hmac"``."""
    return "sha256" if length >= MIN_HASHED_LENGTH else "hmac"


def fingerprint_fields(name: str, value: bytes, key: bytes | None) -> dict[str, Any]:
    """How the secret ``name`` appears in public data: ``<name>_length``, and
    ``<name>_sha256`` (16 bytes or more) or ``<name>_hmac`` (shorter, keyed with ``key``;
    left out when there is no key)."""
    fields: dict[str, Any] = {}
    if fingerprint_kind(len(value)) == "sha256":
        fields[f"{name}_sha256"] = fingerprint(value)
    elif key is not None and value:
        fields[f"{name}_hmac"] = keyed_fingerprint(key, value)
    fields[f"{name}_length"] = len(value)
    return fields


# -- steps ---------------------------------------------------------------------------------


class StepKind(Enum):
    """What a step is, for programs; its ``action`` says the same in English for people and
    may be reworded. docs/protocol.md §1.7 lists the kinds (the values name steps, not
    secrets: hence the noqa marks)."""

    SEND_CLIENT_HELLO = "send_client_hello"
    RECEIVE_CLIENT_HELLO = "receive_client_hello"
    SEND_SERVER_HELLO = "send_server_hello"
    SEND_SERVER_HELLO_RESUME = "send_server_hello_resume"
    SEND_CERTIFICATE = "send_certificate"
    SEND_SERVER_KEY_EXCHANGE = "send_server_key_exchange"
    RECEIVE_SERVER_HELLO = "receive_server_hello"
    VERIFY_CERTIFICATE = "verify_certificate"
    VERIFY_SERVER_KEY_EXCHANGE = "verify_server_key_exchange"
    SEND_ENCRYPTED_PRE_MASTER_SECRET = "send_encrypted_pre_master_secret"  # noqa: S105 (a step name)
    SEND_ECDH_PUBLIC_KEY = "send_ecdh_public_key"
    DECRYPT_PRE_MASTER_SECRET = "decrypt_pre_master_secret"  # noqa: S105 (a step name)
    ECDH_SHARED_SECRET = "ecdh_shared_secret"  # noqa: S105 (a step name)
    # Finite-field DHE (RFC 5246 §7.4.7.2, RFC 7919).
    SEND_DH_PUBLIC_KEY = "send_dh_public_key"
    DH_SHARED_SECRET = "dh_shared_secret"  # noqa: S105 (a step name)
    MASTER_SECRET = "master_secret"  # noqa: S105 (a step name)
    EXTENDED_MASTER_SECRET = "extended_master_secret"  # noqa: S105 (a step name)
    REUSE_MASTER_SECRET = "reuse_master_secret"  # noqa: S105 (a step name)
    KEY_EXPANSION = "key_expansion"
    KEY_SPLIT = "key_split"
    SEND_FINISHED = "send_finished"
    VERIFY_FINISHED = "verify_finished"
    SEAL_DATA = "seal_data"
    OPEN_DATA = "open_data"
    OPEN_TICKET = "open_ticket"
    SEND_NEW_SESSION_TICKET = "send_new_session_ticket"
    RECEIVE_NEW_SESSION_TICKET = "receive_new_session_ticket"
    # Client authentication (RFC 5246 §7.4.4, §7.4.6, §7.4.8).
    SEND_CERTIFICATE_REQUEST = "send_certificate_request"
    RECEIVE_CERTIFICATE_REQUEST = "receive_certificate_request"
    SEND_CLIENT_CERTIFICATE = "send_client_certificate"
    VERIFY_CLIENT_CERTIFICATE = "verify_client_certificate"
    SEND_CERTIFICATE_VERIFY = "send_certificate_verify"
    VERIFY_CERTIFICATE_VERIFY = "verify_certificate_verify"
    RECEIVE_ALERT = "receive_alert"
    ABORT = "abort"
    #: Not TLS: the shared state store refused a late write of another replica (a fleet's
    #: fencing, docs/scaling.md); the step names the replica that was refused.
    STATE_CONFLICT = "state_conflict"


@dataclass(frozen=True)
class Step:
    """One line of the step trace: public values only; secrets appear as their length and
    fingerprint (:func:`fingerprint_fields`: SHA-256, or HMAC below 16 bytes).

    ``secrets`` holds hex values for the opt-in demo switch; services drop it unless
    the operator asked to reveal secrets.
    """

    actor: Role
    kind: StepKind
    action: str
    purpose: str
    data: dict[str, Any]
    elapsed_ms: float
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    #: The step's place in the ladder: 1 client sends ClientHello, 2 server answers it,
    #: 3 client handles the server's flight, 4 server handles the client's second flight,
    #: 5 client checks the server's Finished. Sorting both sides' steps by it gives the ladder.
    flight: int = 0
    #: Which process computed the step, when a caller says (a service replica's name).
    replica: str | None = None

    def to_json(self, reveal_secrets: bool = False) -> dict[str, Any]:
        out = {
            "actor": self.actor.value,
            "flight": self.flight,
            "kind": self.kind.value,
            "action": self.action,
            "purpose": self.purpose,
            "data": self.data,
            "elapsed_ms": round(self.elapsed_ms, 3),
        }
        if self.replica is not None:
            out["replica"] = self.replica
        if reveal_secrets and self.secrets:
            out["secrets"] = dict(self.secrets)
        return out


#: Protected-data steps are traced for this many seals/opens per connection, in ladder
#: position DATA_FLIGHT (after the handshake's five flights).
MAX_TRACED_DATA_STEPS = 4
DATA_FLIGHT = 6


class Trace:
    """One side's steps, in order, timed from the first.

    The handshake machines take one as their ``trace`` argument; without it they record
    nothing (:class:`NullTrace`).

    Args:
        actor: the side whose steps these are (a :class:`Role`, or its value).
        clock: seconds, for the steps' ``elapsed_ms``.
    """

    def __init__(
        self,
        actor: Role,
        clock: Callable[[], float] = time.perf_counter,
        *,
        replica: str | None = None,
    ) -> None:
        self.actor = Role(actor)
        self.clock = clock
        #: Named in every step from now on: which process computed it (the services' replicas).
        self.replica = replica
        self.start = clock()
        self.steps: list[Step] = []
        self.flight = 0
        self._frozen: bytes | None = None  # zlib-compressed JSON of earlier steps
        self._frozen_elapsed = 0.0  # the last frozen step's elapsed_ms
        self._frozen_revealing = False  # whether the frozen steps hold hex secrets
        # to_state's last blob, and the (steps, reveal) it was made for: a store that saves a
        # machine twice in one request compresses its trace once.
        self._saved: tuple[tuple[int, bool], bytes | None] | None = None

    def freeze(self, reveal_secrets: bool) -> None:
        """Keep the steps so far only as compressed JSON, as ``to_json(reveal_secrets)``
        renders them: a fraction of the memory of the objects, and no hex copies of
        secrets unless they are to be revealed."""
        self._frozen, self._frozen_elapsed = self._blob(reveal_secrets), self._elapsed()
        self._frozen_revealing = reveal_secrets
        self.steps = []
        self._saved = None

    def _elapsed(self) -> float:
        return self.steps[-1].elapsed_ms if self.steps else self._frozen_elapsed

    def _blob(self, reveal_secrets: bool) -> bytes | None:
        """The steps as ``to_json(reveal_secrets)`` renders them, compressed; the frozen ones
        as they are when nothing was added since and no secret must be dropped."""
        if not self.steps and (reveal_secrets or not self._frozen_revealing):
            return self._frozen
        return zlib.compress(compact_json(self.to_json(reveal_secrets)), 1)

    def to_state(self, reveal_secrets: bool) -> dict[str, Any]:
        """The trace as plain data for a store, rendered as :meth:`freeze` renders it: the
        steps as compressed JSON (base64), kept as they are while no step is added, so that a
        connection saved on every message does not render its handshake's steps each time."""
        key = (len(self.steps), reveal_secrets)
        if self._saved is None or self._saved[0] != key:
            self._saved = (key, self._blob(reveal_secrets))
        blob = self._saved[1]
        return {
            "actor": self.actor.value,
            "flight": self.flight,
            "elapsed_ms": round(self._elapsed(), 3),
            "revealing": reveal_secrets,
            "frozen": base64.b64encode(blob).decode() if blob is not None else None,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], clock: Callable[[], float] = time.perf_counter
    ) -> Trace:
        """The trace :meth:`to_state` saved, frozen. Its clock goes on from the last step: the
        time between two requests, perhaps served by two processes, is not counted."""
        trace = cls(Role(state["actor"]), clock)
        trace._frozen_elapsed = float(state["elapsed_ms"])
        trace.start -= trace._frozen_elapsed / 1000.0
        trace.flight = int(state["flight"])
        frozen = state["frozen"]
        if frozen is not None:
            trace._frozen = base64.b64decode(frozen, validate=True)
            trace._frozen_revealing = bool(state["revealing"])
        return trace

    def to_json(self, reveal_secrets: bool = False) -> list[dict[str, Any]]:
        earlier: list[dict[str, Any]] = (
            json.loads(zlib.decompress(self._frozen)) if self._frozen is not None else []
        )
        if not reveal_secrets:
            # Frozen while revealing, rendered without: the secrets stay out all the same.
            for step in earlier:
                step.pop("secrets", None)
        return earlier + [step.to_json(reveal_secrets) for step in self.steps]

    def add(
        self,
        kind: StepKind,
        action: str,
        purpose: str,
        secrets: dict[str, bytes] | None = None,
        fingerprint_key: bytes | None = None,
        *,
        by: str | None = None,
        **data: Any,
    ) -> None:
        """One step; each of ``secrets`` appears in ``data`` as :func:`fingerprint_fields`
        renders it (short ones keyed with ``fingerprint_key``), in hex only under ``secrets``.
        ``by`` names the replica the step is about when it is not this trace's own."""
        secret_values = secrets or {}
        for name, value in secret_values.items():
            data.update(fingerprint_fields(name, value, fingerprint_key))
        self.steps.append(
            Step(
                self.actor,
                kind,
                action,
                purpose,
                data,
                (self.clock() - self.start) * 1000.0,
                {k: v.hex() for k, v in secret_values.items()},
                self.flight,
                by if by is not None else self.replica,
            )
        )


def compact_json(value: Any) -> bytes:
    """``value`` (parsed JSON: rendered steps, recorded exchanges) as compact UTF-8 JSON, to be
    kept and read back with the stdlib: orjson, several times faster than the stdlib encoder
    for the same content; what orjson refuses (an integer beyond 64 bits) the stdlib writes."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


class NullTrace(Trace):
    """A trace that records nothing: the machines' default when no :class:`Trace` is given.

    Same interface, but :meth:`add` drops its step before anything is fingerprinted, so
    ``steps`` stays empty, :meth:`to_json` is ``[]`` and no secret is ever held here.
    """

    def freeze(self, reveal_secrets: bool) -> None:
        """Nothing to keep."""

    def to_json(self, reveal_secrets: bool = False) -> list[dict[str, Any]]:
        return []

    def add(
        self,
        kind: StepKind,
        action: str,
        purpose: str,
        secrets: dict[str, bytes] | None = None,
        fingerprint_key: bytes | None = None,
        *,
        by: str | None = None,
        **data: Any,
    ) -> None:
        """Drop the step."""
