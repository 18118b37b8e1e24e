"""An established connection: application data protection after a successful handshake.

RFC 5246 §6.2.3 (protected records) and §7.2.2 (any failure to open a record is fatal).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from .errors import LocalProtocolError, SequenceExhausted, TLSError, UnexpectedMessage
from .prf import key_block
from .record import MAX_SEQUENCE, ContentType, RecordProtection, connection_record_layers
from .role import Role
from .suites import SUITES, CipherSuite, KeyMaterial, key_block_layout, split_key_block
from .trace import (
    DATA_FLIGHT,
    MAX_TRACED_DATA_STEPS,
    StepKind,
    Trace,
    fingerprint,
    fingerprint_key,
    fingerprint_kind,
    keyed_fingerprint,
)

__all__ = ["Connection"]


class Connection:
    """Application data protection after a successful handshake.

    Any failure to open a record is fatal, as in TLS (RFC 5246 §7.2.2): the
    connection refuses everything afterwards.
    """

    def __init__(
        self,
        side: Role,
        suite: CipherSuite,
        keys: KeyMaterial,
        master: bytes,
        block: bytes,
        writer: RecordProtection,
        reader: RecordProtection,
        *,
        client_random: bytes,
        server_random: bytes,
        session_id: bytes,
        resumed: bool,
        extended_master_secret: bool,
        encrypt_then_mac: bool,
        trace: Trace | None = None,
    ) -> None:
        self.side = side
        self.suite = suite
        self._keys = keys
        self._master_secret = master
        self._key_block = block
        self.writer = writer
        self.reader = reader
        self.client_random = client_random
        self.server_random = server_random
        self.session_id = session_id
        self.resumed = resumed
        self.extended_master_secret = extended_master_secret
        self.encrypt_then_mac = encrypt_then_mac
        self.closed = False
        self.close_reason: str | None = None
        self._trace = trace
        self._traced_records = 0
        #: Told the alert of a failure that ends the connection (not close_notify): the
        #: handshake that made the connection fails with it, so that one state says so.
        self.on_fail: Callable[[str], None] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.side} {self.suite.name} closed={self.closed}>"

    def to_state(self) -> dict[str, Any]:
        """Everything needed to go on with this connection elsewhere, as plain data. It holds
        the master secret: a store must encrypt it at rest. The keys are derived again."""
        return {
            "suite": self.suite.name,
            "master_secret": self._master_secret.hex(),
            "client_random": self.client_random.hex(),
            "server_random": self.server_random.hex(),
            "session_id": self.session_id.hex(),
            "resumed": self.resumed,
            "extended_master_secret": self.extended_master_secret,
            "encrypt_then_mac": self.encrypt_then_mac,
            "write_seq": self.writer.seq,
            "read_seq": self.reader.seq,
            "closed": self.closed,
            "close_reason": self.close_reason,
            "traced_records": self._traced_records,
        }

    @classmethod
    def from_state(
        cls,
        side: Role,
        state: dict[str, Any],
        *,
        trace: Trace | None = None,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> Connection:
        """The connection :meth:`to_state` saved, with its sequence numbers where they were."""
        suite = SUITES[state["suite"]]
        master = bytes.fromhex(state["master_secret"])
        client_random = bytes.fromhex(state["client_random"])
        server_random = bytes.fromhex(state["server_random"])
        block = key_block(
            master, client_random, server_random, suite.key_block_length, suite.prf_hash
        )
        keys = split_key_block(suite, block)
        etm = bool(state["encrypt_then_mac"])
        writer, reader = connection_record_layers(
            keys, side, encrypt_then_mac=etm, random_bytes=random_bytes
        )
        writer.seq, reader.seq = int(state["write_seq"]), int(state["read_seq"])
        connection = cls(
            side,
            suite,
            keys,
            master,
            block,
            writer,
            reader,
            client_random=client_random,
            server_random=server_random,
            session_id=bytes.fromhex(state["session_id"]),
            resumed=bool(state["resumed"]),
            extended_master_secret=bool(state["extended_master_secret"]),
            encrypt_then_mac=etm,
            trace=trace,
        )
        connection.closed = bool(state["closed"])
        connection.close_reason = state["close_reason"]
        connection._traced_records = int(state["traced_records"])
        return connection

    def _trace_data(
        self, kind: StepKind, action: str, first_seq: int, records: int, size: int
    ) -> bool:
        """Add the step table's last row, "protected data", for the first few messages only,
        so a long conversation does not grow the trace without bound. True if it was added."""
        if self._trace is None or self._traced_records >= MAX_TRACED_DATA_STEPS:
            return False
        self._traced_records += 1
        self._trace.flight = DATA_FLIGHT
        self._trace.add(
            kind,
            action,
            "application data under the derived keys: "
            + (
                "AEAD (confidentiality and integrity in one)"
                if self.suite.kind == "aead"
                else "AES-CBC for confidentiality, HMAC for integrity"
            ),
            first_seq=first_seq,
            records=records,
            plaintext_bytes=size,
            cipher_suite=self.suite.name,
        )
        return True

    def seal(self, data: bytes) -> bytes:
        """Protect application data as one or more records, back to back. Raises
        LocalProtocolError on a closed connection: sending there is the caller's mistake."""
        if self.closed:
            raise LocalProtocolError(f"cannot seal on a closed connection ({self.close_reason})")
        first_seq = self.writer.seq
        sealed = self.writer.seal_many(ContentType.application_data, data)
        self._trace_data(
            StepKind.SEAL_DATA,
            "seal protected data",
            first_seq,
            self.writer.seq - first_seq,
            len(data),
        )
        return sealed

    def seal_durably(self, pieces: Sequence[bytes], persist: Callable[[], None]) -> bytes:
        """Seal each of ``pieces`` (at most 2^14 bytes each) as one record, but only after
        ``persist()`` has returned: it runs with the write sequence number already advanced past
        all of them, so a store outside the process keeps that advance before any record under
        those numbers exists. No crash or restart can then make anyone seal two records under
        one key and sequence number (for GCM, a nonce used twice). If ``persist`` raises, no
        record is sealed and the numbers stay spent. The seal's trace step is already there when
        ``persist`` runs: what it keeps is the state after sealing."""
        if self.closed:
            raise LocalProtocolError(f"cannot seal on a closed connection ({self.close_reason})")
        first = self.writer.seq
        if first + len(pieces) - 1 > MAX_SEQUENCE:
            raise SequenceExhausted("sequence number space exhausted; run a new handshake")
        self.writer.seq = first + len(pieces)
        # Traced before it is kept, so that what is kept is the state after sealing: a store can
        # make this its last write (nothing changes after it). Withdrawn if it was not kept.
        traced = self._trace_data(
            StepKind.SEAL_DATA, "seal protected data", first, len(pieces), sum(map(len, pieces))
        )
        try:
            persist()
        except BaseException:
            if traced and self._trace is not None:
                self._trace.steps.pop()
                self._traced_records -= 1
            raise
        self.writer.seq = first
        return b"".join(self.writer.seal(ContentType.application_data, piece) for piece in pieces)

    def open(self, records: bytes) -> bytes:
        """Open application-data records and return their joined plaintext. On a closed
        connection they are the peer's mistake: UnexpectedMessage."""
        if self.closed:
            raise UnexpectedMessage(f"connection is closed ({self.close_reason})")
        try:
            opened = self.reader.open_many(records)
            if any(ct is not ContentType.application_data for ct, _ in opened):
                raise UnexpectedMessage("expected application data records")
        except TLSError as exc:
            self.fail(exc.code)
            raise
        plaintext = b"".join(p for _, p in opened)
        self._trace_data(
            StepKind.OPEN_DATA,
            "open protected data",
            self.reader.seq - len(opened),
            len(opened),
            len(plaintext),
        )
        return plaintext

    def fail(self, reason: str) -> None:
        """Close the connection for good; ``reason`` is ``close_notify`` or the alert that ended
        it, which :attr:`on_fail` hears (the first reason is the one kept)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if reason != "close_notify" and self.on_fail is not None:
            self.on_fail(reason)

    def release(self) -> None:
        """Drop both directions' keyed cipher and MAC objects until the next record (see
        :meth:`RecordProtection.release`): for connections that sit idle between messages."""
        self.writer.release()
        self.reader.release()

    def fingerprints(self) -> dict[str, str]:
        """SHA-256 of the master secret (48 bytes) and the key block (40 bytes or more)."""
        return {
            "master_secret": fingerprint(self._master_secret),
            "key_block": fingerprint(self._key_block),
        }

    def key_layout(self) -> list[dict[str, Any]]:
        """The six keys' positions in the key block with their fingerprints (no key bytes):
        ``sha256`` for a key of 16 bytes or more, ``hmac`` (under :func:`fingerprint_key`)
        for a shorter one such as a GCM salt; the other is null, both are for an empty key."""
        layout = []
        for part in key_block_layout(self.suite):
            value: bytes = getattr(self._keys, part.name)
            kind = fingerprint_kind(part.length)
            layout.append(
                {
                    "name": part.name,
                    "start": part.start,
                    "length": part.length,
                    "sha256": fingerprint(value) if kind == "sha256" else None,
                    "hmac": (
                        keyed_fingerprint(self._fingerprint_key, value)
                        if kind == "hmac" and value
                        else None
                    ),
                }
            )
        return layout

    @cached_property
    def _fingerprint_key(self) -> bytes:
        # Derived once, and only for a suite with a key under 16 bytes: every GET /sessions
        # renders the layout again.
        return fingerprint_key(
            self._master_secret, self.client_random, self.server_random, self.suite.prf_hash
        )

    def reveal_secrets(self) -> dict[str, str]:
        """The secrets in hex, for the explicit demo switch only."""
        values = {"master_secret": self._master_secret.hex(), "key_block": self._key_block.hex()}
        for part in key_block_layout(self.suite):
            values[part.name] = getattr(self._keys, part.name).hex()
        return values

    @property
    def master_secret_for_keylog(self) -> bytes:
        """The master secret, for NSS key log lines only (an explicit opt-in)."""
        return self._master_secret
