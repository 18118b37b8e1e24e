"""Rebuild a lab handshake from the JSON that crossed the wire: messages, transcript, keys.

The services send handshake messages as JSON (docs/protocol.md §1) but hash their TLS
encodings (§2; RFC 5246 §7.4.9, RFC 7627 §3). This module decodes a client_svc session's
``exchanges`` with kdf_lib's own codecs and rebuilds those encodings exactly as both
services do, so a tool that holds only the wire data and a master secret can check
Finished and open records, the way Wireshark does with a key log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kdf_lib import extended_master_secret, finished_verify_data, key_block, master_secret, pki
from kdf_lib.errors import TLSError
from kdf_lib.handshake import ClientFinish, ServerFlight
from kdf_lib.messages import (
    CertificateMessage,
    ClientHello,
    ClientKeyExchange,
    Finished,
    ServerHelloDone,
    decode_b64,
)
from kdf_lib.record import RecordProtection
from kdf_lib.suites import CipherSuite, KeyMaterial, split_key_block

__all__ = [
    "FINISH_PATH",
    "HELLO_PATH",
    "ExchangeError",
    "WireHandshake",
    "parse_exchanges",
]

HELLO_PATH = "/handshake/hello"
FINISH_PATH = "/handshake/finish"
#: The largest Finished record the services accept (docs/protocol.md §1.5).
MAX_FINISHED_RECORD = 4096


class ExchangeError(ValueError):
    """The exchanged JSON does not describe a complete, well-formed lab handshake."""


@dataclass(frozen=True)
class WireHandshake:
    """One handshake as it crossed the wire, decoded with kdf_lib's codecs.

    ``client_finished_record`` and ``server_finished_record`` are the protected records
    (sequence number 0 in each direction); everything else is public.
    """

    connection_id: str | None
    client_hello: ClientHello
    server_flight: ServerFlight
    certificate_chain: tuple[x509.Certificate, ...]
    client_key_exchange: ClientKeyExchange | None
    client_finished_record: bytes
    server_finished_record: bytes

    # -- negotiated values ---------------------------------------------------------

    @property
    def suite(self) -> CipherSuite:
        return self.server_flight.server_hello.cipher_suite

    @property
    def client_random(self) -> bytes:
        return self.client_hello.random

    @property
    def server_random(self) -> bytes:
        return self.server_flight.server_hello.random

    @property
    def session_id(self) -> bytes:
        return self.server_flight.server_hello.session_id

    @property
    def resumed(self) -> bool:
        return self.server_flight.resumed

    @property
    def extended_master_secret(self) -> bool:
        return self.server_flight.server_hello.extensions.extended_master_secret

    @property
    def encrypt_then_mac(self) -> bool:
        """RFC 7366: on only when the ServerHello echoes it, and never with an AEAD suite."""
        return (
            self.server_flight.server_hello.extensions.encrypt_then_mac and not self.suite.is_aead
        )

    @property
    def first_finished_sender(self) -> str:
        """Who sends Finished first: the client in a full handshake, the server when resuming."""
        return "server" if self.resumed else "client"

    # -- the transcript (docs/protocol.md §2.8) --------------------------------------

    def handshake_messages(self) -> list[tuple[str, bytes]]:
        """The TLS encodings of the messages before the first Finished, in protocol order.

        Full handshake: ClientHello, ServerHello, Certificate, [ServerKeyExchange],
        ServerHelloDone, ClientKeyExchange. Abbreviated: ClientHello, ServerHello.
        """
        flight = self.server_flight
        messages = [
            ("ClientHello", self.client_hello.encode()),
            ("ServerHello", flight.server_hello.encode()),
        ]
        if self.resumed:
            return messages
        der = tuple(c.public_bytes(Encoding.DER) for c in self.certificate_chain)
        messages.append(("Certificate", CertificateMessage(der).encode()))
        if flight.server_key_exchange is not None:
            messages.append(("ServerKeyExchange", flight.server_key_exchange.encode()))
        messages.append(("ServerHelloDone", ServerHelloDone().encode()))
        assert self.client_key_exchange is not None  # parse_exchanges guarantees it
        messages.append(("ClientKeyExchange", self.client_key_exchange.encode()))
        return messages

    def transcript_hash(self, transcript: bytes) -> bytes:
        """Hash(transcript) with the suite's PRF hash (SHA-384 for the _SHA384 suites)."""
        return hashlib.new(self.suite.prf_hash, transcript).digest()

    def session_hash(self) -> bytes:
        """RFC 7627 §3 session_hash: Hash(ClientHello .. ClientKeyExchange), full handshakes only."""
        if self.resumed:
            raise ValueError("an abbreviated handshake has no session hash (no key exchange)")
        return self.transcript_hash(b"".join(m for _, m in self.handshake_messages()))

    def finished_transcript(self, sender: str, first_finished: Finished | None = None) -> bytes:
        """The transcript ``sender``'s Finished covers (RFC 5246 §7.4.9).

        The first Finished covers the messages of :meth:`handshake_messages`; the second
        also covers the first Finished message, which the caller passes in (as opened
        from its record: what the receiver actually saw).
        """
        if sender not in ("client", "server"):
            raise ValueError(f"sender must be 'client' or 'server', not {sender!r}")
        base = b"".join(m for _, m in self.handshake_messages())
        if sender == self.first_finished_sender:
            return base
        if first_finished is None:
            raise ValueError(f"the {sender} Finished covers the first Finished: pass it in")
        return base + first_finished.encode()

    def expected_verify_data(self, master: bytes, sender: str, transcript: bytes) -> bytes:
        """verify_data = PRF(master_secret, "<sender> finished", Hash(transcript))[0..11]."""
        return finished_verify_data(
            master, sender, self.transcript_hash(transcript), self.suite.prf_hash
        )

    # -- the key schedule (docs/protocol.md §3) --------------------------------------

    def derive_master_secret(self, pre_master_secret: bytes) -> bytes:
        """The master secret a full handshake derives from ``pre_master_secret``.

        RFC 7627 §4 when the extended master secret was negotiated, else RFC 5246 §8.1.
        An abbreviated handshake reuses its session's master secret instead.
        """
        if self.resumed:
            raise ValueError("an abbreviated handshake reuses the session's master secret")
        prf_hash = self.suite.prf_hash
        if self.extended_master_secret:
            return extended_master_secret(pre_master_secret, self.session_hash(), prf_hash)
        return master_secret(pre_master_secret, self.client_random, self.server_random, prf_hash)

    def key_material(self, master: bytes) -> tuple[bytes, KeyMaterial]:
        """(key_block, its six keys): PRF(master, "key expansion", server_random + client_random)."""
        suite = self.suite
        block = key_block(
            master, self.client_random, self.server_random, suite.key_block_length, suite.prf_hash
        )
        return block, split_key_block(suite, block)

    def record_readers(self, master: bytes) -> dict[str, RecordProtection]:
        """One record reader per sender ("client", "server"), both at sequence number 0.

        Each reader holds the keys its sender writes with, so it opens that sender's records.
        """
        _, keys = self.key_material(master)
        readers = {}
        for sender in ("client", "server"):
            mac_key, enc_key, fixed_iv = keys.for_writer(sender)
            readers[sender] = RecordProtection(
                self.suite, mac_key, enc_key, fixed_iv, encrypt_then_mac=self.encrypt_then_mac
            )
        return readers


# -- parsing --------------------------------------------------------------------------


def parse_exchanges(source: Mapping[str, Any] | Sequence[Any]) -> WireHandshake:
    """Decode a handshake from client_svc's ``GET /sessions/<id>`` answer (or its ``exchanges``).

    The hello request is decoded with ``ClientHello.from_json``, the hello response (without
    its ``connection_id`` envelope field) with ``ServerFlight.from_json``, the finish request
    with ``ClientFinish.from_json``, exactly as server_svc and client_svc decode them.

    Raises:
        ExchangeError: an exchange is missing, incomplete or does not decode.
    """
    if isinstance(source, Mapping):
        exchanges = source.get("exchanges")
        connection_id = source.get("connection_id")
    else:
        exchanges, connection_id = source, None
    if not isinstance(exchanges, list):
        raise ExchangeError(
            "no 'exchanges' list: expected what GET /sessions/<id> on client_svc returns"
        )
    hello_request, hello_response = _exchange(exchanges, HELLO_PATH)
    finish_request, finish_response = _exchange(exchanges, FINISH_PATH)

    hello = _decode("the hello request (ClientHello)", ClientHello.from_json, hello_request)
    flight_json = dict(hello_response)
    answered_id = flight_json.pop("connection_id", None)
    flight = _decode("the hello response (ServerHello flight)", ServerFlight.from_json, flight_json)
    finish_json = dict(finish_request)
    finish_json.pop("connection_id", None)
    finish = _decode("the finish request (client Finished)", ClientFinish.from_json, finish_json)

    chain: list[x509.Certificate] = []
    for pem in flight.certificate_pem:
        chain.extend(_decode("the certificate chain", pki.load_certificate_chain, pem))
    if flight.resumed:
        assert flight.finished_record is not None
        server_finished = flight.finished_record
        if finish.client_key_exchange is not None:
            raise ExchangeError("a resumed handshake carries no ClientKeyExchange")
    else:
        if not chain:
            raise ExchangeError("the full handshake's hello response has no certificate")
        if finish.client_key_exchange is None:
            raise ExchangeError("the full handshake's finish request has no ClientKeyExchange")
        server_finished = _decode(
            "the finish response's finished_record",
            lambda v: decode_b64(v, "finished_record", max_length=MAX_FINISHED_RECORD),
            finish_response.get("finished_record"),
        )
    if connection_id is None and isinstance(answered_id, str):
        connection_id = answered_id
    return WireHandshake(
        connection_id=connection_id if isinstance(connection_id, str) else None,
        client_hello=hello,
        server_flight=flight,
        certificate_chain=tuple(chain),
        client_key_exchange=finish.client_key_exchange,
        client_finished_record=finish.finished_record,
        server_finished_record=server_finished,
    )


def _exchange(exchanges: Sequence[Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request body, response body) of the one exchange with ``path``."""
    found = [
        e
        for e in exchanges
        if isinstance(e, dict)
        and isinstance(e.get("request"), dict)
        and e["request"].get("path") == path
    ]
    if len(found) != 1:
        raise ExchangeError(f"expected one {path} exchange, found {len(found)}")
    request, response = found[0]["request"].get("body"), found[0].get("response")
    if not isinstance(request, dict):
        raise ExchangeError(f"the {path} exchange has no request body")
    if not isinstance(response, dict):
        raise ExchangeError(f"the {path} exchange has no response: the handshake did not finish")
    return request, response


def _decode(what: str, decoder: Any, value: Any) -> Any:
    try:
        return decoder(value)
    except TLSError as exc:
        raise ExchangeError(f"{what} does not decode: {exc.message}") from None
