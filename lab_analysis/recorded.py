"""A TLS 1.2 handshake rebuilt from the JSON that crossed the wire, sans-I/O.

The services send handshake messages as JSON (docs/protocol.md §1) but hash their TLS
encodings (§2; RFC 5246 §7.4.9, RFC 7627 §3). This module decodes recorded bodies with
kdf_lib's own codecs, exactly as server_svc and client_svc decode them, and rebuilds those
encodings with the ``kdf_lib.messages`` encoders, for full and abbreviated handshakes alike.
Whoever holds only the wire data and one secret can then check both Finished messages and
open records: ``tls-lab decrypt`` with a key log's master secret, the demos' eavesdropper
(lab_analysis.diagnose) with the server's private key.

Recorded input is untrusted: anything that does not describe a complete, consistent
handshake is refused with :class:`ExchangeError`, never with a KeyError or an assertion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from kdf_lib import kex, pki
from kdf_lib.errors import DecodeError, TLSError
from kdf_lib.messages import (
    MAX_FINISHED_RECORD,
    CertificateMessage,
    CertificateVerify,
    ClientFinish,
    ClientHello,
    ClientKeyExchange,
    Finished,
    NewSessionTicket,
    ServerFlight,
    ServerHelloDone,
    decode_b64,
)
from kdf_lib.prf import (
    HASHES,
    extended_master_secret,
    finished_verify_data,
    key_block,
    master_secret,
)
from kdf_lib.record import RecordProtection
from kdf_lib.role import Role
from kdf_lib.suites import CipherSuite, KeyExchange, KeyMaterial, split_key_block
from lab_common.contract import CONNECTION_ID_LENGTH, FINISH, HELLO, SESSION, is_connection_id

__all__ = [
    "ExchangeError",
    "HandshakeMessage",
    "RecordedHandshake",
    "parse_exchanges",
    "through_client_key_exchange",
    "transcript_hash",
]

#: What a connection id in a recording must be (lab_common.contract.is_connection_id).
_ID_FORMAT = f"a string of {CONNECTION_ID_LENGTH} lowercase hex digits"

T = TypeVar("T")


class ExchangeError(DecodeError, ValueError):
    """The recorded JSON does not describe a complete, well-formed lab handshake.

    A :class:`DecodeError`, so a service answers it as ``decode_error`` like any other body
    that does not decode; and a ValueError, so a tool that does not know kdf_lib's alert
    tree can still catch it as bad input.
    """


@dataclass(frozen=True)
class HandshakeMessage:
    """One handshake message in its TLS encoding, as it goes into the transcript."""

    name: str
    encoded: bytes


def through_client_key_exchange(
    messages: Sequence[HandshakeMessage],
) -> tuple[HandshakeMessage, ...]:
    """The messages up to and including ClientKeyExchange: what the RFC 7627 session hash
    covers. With mutual TLS a CertificateVerify follows, which only Finished covers."""
    names = [message.name for message in messages]
    if "ClientKeyExchange" not in names:
        return tuple(messages)
    return tuple(messages[: names.index("ClientKeyExchange") + 1])


def transcript_hash(messages: Sequence[HandshakeMessage], hash_name: str) -> bytes:
    """Hash(handshake_messages) with the PRF hash: the EMS session hash and Finished's input."""
    digest = hashes.Hash(HASHES[hash_name]())
    for message in messages:
        digest.update(message.encoded)
    return digest.finalize()


@dataclass(frozen=True)
class RecordedHandshake:
    """One handshake as it crossed the wire, decoded with kdf_lib's codecs.

    ``client_finished_record`` and ``server_finished_record`` are the protected records
    (sequence number 0 in each direction); everything else is public. Construction checks
    that the parts fit together (a full handshake has a certificate and a ClientKeyExchange
    of the suite's kind, a resumed one neither), so every method can rely on it.
    """

    client_hello: ClientHello
    server_flight: ServerFlight
    client_key_exchange: ClientKeyExchange | None
    client_finished_record: bytes
    server_finished_record: bytes
    connection_id: str | None = None
    #: RFC 5077: the NewSessionTicket before the server's Finished (in the hello answer when
    #: resuming, in the finish answer of a full handshake), if the server sent one.
    new_session_ticket: NewSessionTicket | None = None
    #: Mutual TLS (docs/protocol.md §3.10): the client's Certificate (PEM, possibly empty)
    #: when the server sent a CertificateRequest, and its CertificateVerify after a non-empty one.
    client_certificate_pem: tuple[str, ...] | None = None
    certificate_verify: CertificateVerify | None = None
    #: The server's certificates, leaf first, parsed from the flight's PEM.
    certificate_chain: tuple[x509.Certificate, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flight, cke = self.server_flight, self.client_key_exchange
        chain = tuple(
            c
            for pem in flight.certificate_pem
            for c in _decode("the certificate chain", pki.load_certificate_chain, pem)
        )
        object.__setattr__(self, "certificate_chain", chain)
        if flight.resumed:
            if cke is not None:
                raise ExchangeError("a resumed handshake carries no ClientKeyExchange")
            if chain or flight.server_key_exchange is not None:
                raise ExchangeError(
                    "a resumed handshake's hello response carries no Certificate or "
                    "ServerKeyExchange"
                )
            return
        if not chain:
            raise ExchangeError("the full handshake's hello response has no certificate")
        if cke is None:
            raise ExchangeError("the full handshake's finish request has no ClientKeyExchange")
        _check_key_exchange(self.suite, flight, cke)
        requested = flight.certificate_request is not None
        if requested != (self.client_certificate_pem is not None):
            raise ExchangeError(
                "a client Certificate comes exactly when the server sent a CertificateRequest"
            )
        if bool(self.client_certificate_pem) != (self.certificate_verify is not None):
            raise ExchangeError("a CertificateVerify comes exactly after a non-empty Certificate")

    # -- decoding ----------------------------------------------------------------------

    @classmethod
    def from_json(
        cls,
        hello: object,
        flight: object,
        finish: object,
        finish_answer: object,
        *,
        connection_id: str | None = None,
    ) -> RecordedHandshake:
        """Decode the four bodies of one handshake, as POST /handshake/hello and
        /handshake/finish carried them (``connection_id`` envelopes included).

        The hello request is decoded with ``ClientHello.from_json``, the hello response with
        ``ServerFlight.from_json``, the finish request with ``ClientFinish.from_json``: the
        very decoders the services use. Only ``finished_record`` is read from the finish
        response (its fingerprints and trace are teaching aids); a resumed handshake's server
        Finished came in the hello response instead.

        Raises:
            ExchangeError: a body does not decode, the parts do not fit together, or the
                envelopes name different connections.
        """
        client_hello = _decode("the hello request (ClientHello)", ClientHello.from_json, hello)
        flight_body, flight_id = _without_envelope(flight, "hello response")
        server_flight = _decode(
            "the hello response (ServerHello flight)", ServerFlight.from_json, flight_body
        )
        finish_body, finish_id = _without_envelope(finish, "finish request")
        client_finish = _decode(
            "the finish request (client Finished)", ClientFinish.from_json, finish_body
        )
        answer_body, answer_id = _without_envelope(finish_answer, "finish response")
        ticket = server_flight.new_session_ticket
        if server_flight.finished_record is not None:
            server_finished = server_flight.finished_record
        else:
            server_finished = _decode(
                "the finish response's finished_record",
                lambda v: decode_b64(v, "finished_record", max_length=MAX_FINISHED_RECORD),
                answer_body.get("finished_record"),
            )
            if answer_body.get("new_session_ticket") is not None:
                ticket = _decode(
                    "the finish response's new_session_ticket",
                    NewSessionTicket.from_json,
                    answer_body["new_session_ticket"],
                )
        ids = sorted({i for i in (connection_id, flight_id, finish_id, answer_id) if i is not None})
        if len(ids) > 1:
            raise ExchangeError(
                f"the recorded bodies belong to different connections: {', '.join(ids)}"
            )
        return cls(
            client_hello,
            server_flight,
            client_finish.client_key_exchange,
            client_finish.finished_record,
            server_finished,
            ids[0] if ids else None,
            ticket,
            client_finish.certificate_chain,
            client_finish.certificate_verify,
        )

    # -- negotiated values -------------------------------------------------------------

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
    def first_finished_sender(self) -> Role:
        """Who sends Finished first: the client in a full handshake, the server when resuming."""
        return Role.SERVER if self.resumed else Role.CLIENT

    # -- the transcript (docs/protocol.md §2.8) ----------------------------------------

    def handshake_messages(self) -> tuple[HandshakeMessage, ...]:
        """The TLS encodings of the messages before the first Finished, in protocol order,
        rebuilt exactly as both services encode them.

        Full handshake: ClientHello, ServerHello, Certificate, [ServerKeyExchange],
        [CertificateRequest], ServerHelloDone, [client Certificate], ClientKeyExchange (the
        RFC 7627 session hash covers these), [CertificateVerify] (mutual TLS).
        Abbreviated: ClientHello, ServerHello, [NewSessionTicket].
        """
        flight = self.server_flight
        messages = [
            HandshakeMessage("ClientHello", self.client_hello.encode()),
            HandshakeMessage("ServerHello", flight.server_hello.encode()),
        ]
        if self.client_key_exchange is None:  # resumed: __post_init__ allows nothing else
            if self.new_session_ticket is not None:
                messages.append(
                    HandshakeMessage("NewSessionTicket", self.new_session_ticket.encode())
                )
            return tuple(messages)
        chain_der = tuple(c.public_bytes(Encoding.DER) for c in self.certificate_chain)
        messages.append(HandshakeMessage("Certificate", CertificateMessage(chain_der).encode()))
        if flight.server_key_exchange is not None:
            messages.append(
                HandshakeMessage("ServerKeyExchange", flight.server_key_exchange.encode())
            )
        if flight.certificate_request is not None:
            messages.append(
                HandshakeMessage("CertificateRequest", flight.certificate_request.encode())
            )
        messages.append(HandshakeMessage("ServerHelloDone", ServerHelloDone().encode()))
        if self.client_certificate_pem is not None:
            client_chain = tuple(
                c.public_bytes(Encoding.DER)
                for pem in self.client_certificate_pem
                for c in _decode("the client certificate chain", pki.load_certificate_chain, pem)
            )
            messages.append(
                HandshakeMessage("client Certificate", CertificateMessage(client_chain).encode())
            )
        messages.append(HandshakeMessage("ClientKeyExchange", self.client_key_exchange.encode()))
        if self.certificate_verify is not None:
            messages.append(HandshakeMessage("CertificateVerify", self.certificate_verify.encode()))
        return tuple(messages)

    def session_hash(self) -> bytes:
        """RFC 7627 §3 session_hash: Hash(ClientHello .. ClientKeyExchange), full handshakes only."""
        if self.resumed:
            raise ValueError("an abbreviated handshake has no session hash (no key exchange)")
        covered = through_client_key_exchange(self.handshake_messages())
        return transcript_hash(covered, self.suite.prf_hash)

    def finished_messages(
        self, sender: Role, first_finished: Finished | None = None
    ) -> tuple[HandshakeMessage, ...]:
        """The messages ``sender``'s Finished covers (RFC 5246 §7.4.9).

        The first Finished covers :meth:`handshake_messages`; the second also covers the first
        Finished message, which the caller passes in (as opened from its record: what the
        receiver actually saw). It is named "<first sender> Finished".

        Raises:
            ValueError: ``sender`` is not a :class:`Role` (or its value), or the first Finished
                is missing.
        """
        try:
            sender = Role(sender)
        except ValueError:
            raise ValueError(f"sender must be 'client' or 'server', not {sender!r}") from None
        messages = self.handshake_messages()
        first = self.first_finished_sender
        if sender == first:
            return messages
        if first_finished is None:
            raise ValueError(f"the {sender} Finished covers the {first} Finished: pass it in")
        covered = (*messages, HandshakeMessage(f"{first} Finished", first_finished.encode()))
        if not self.resumed and self.new_session_ticket is not None:
            # A full handshake's ticket comes after the client's Finished, before the server's.
            covered += (HandshakeMessage("NewSessionTicket", self.new_session_ticket.encode()),)
        return covered

    def expected_verify_data(
        self, master: bytes, sender: Role, first_finished: Finished | None = None
    ) -> bytes:
        """verify_data = PRF(master_secret, "<sender> finished", Hash(covered messages))[0..11]."""
        h = self.suite.prf_hash
        covered = self.finished_messages(sender, first_finished)
        return finished_verify_data(master, sender, transcript_hash(covered, h), h)

    # -- the key schedule (docs/protocol.md §3) ----------------------------------------

    def derive_master_secret(self, pre_master_secret: bytes) -> bytes:
        """The master secret a full handshake derives from ``pre_master_secret``.

        RFC 7627 §4 when the extended master secret was negotiated, else RFC 5246 §8.1.
        An abbreviated handshake reuses its session's master secret instead.
        """
        if self.resumed:
            raise ValueError("an abbreviated handshake reuses the session's master secret")
        h = self.suite.prf_hash
        if self.extended_master_secret:
            return extended_master_secret(pre_master_secret, self.session_hash(), h)
        return master_secret(pre_master_secret, self.client_random, self.server_random, h)

    def key_material(self, master: bytes) -> tuple[bytes, KeyMaterial]:
        """(key_block, its six keys): PRF(master, "key expansion", server_random + client_random)."""
        suite = self.suite
        block = key_block(
            master, self.client_random, self.server_random, suite.key_block_length, suite.prf_hash
        )
        return block, split_key_block(suite, block)

    def record_readers(self, master: bytes) -> dict[Role, RecordProtection]:
        """One record reader per sender, both at sequence number 0.

        Each reader holds the keys its sender writes with, so it opens that sender's records.
        """
        _, keys = self.key_material(master)
        readers = {}
        for sender in Role:
            mac_key, enc_key, fixed_iv = keys.for_writer(sender)
            readers[sender] = RecordProtection(
                self.suite, mac_key, enc_key, fixed_iv, encrypt_then_mac=self.encrypt_then_mac
            )
        return readers


# -- parsing ---------------------------------------------------------------------------


def parse_exchanges(source: object) -> RecordedHandshake:
    """Decode a handshake from client_svc's ``GET /sessions/<id>`` answer (or its ``exchanges``).

    Each exchange is ``{"request": {"path", "body"}, "response": body}``; the one hello and the
    one finish exchange give the four bodies of :meth:`RecordedHandshake.from_json`.

    Raises:
        ExchangeError: an exchange is missing, incomplete or does not decode.
    """
    connection_id: object = None
    if isinstance(source, Mapping):
        exchanges, connection_id = source.get("exchanges"), source.get("connection_id")
    else:
        exchanges = source
    if not isinstance(exchanges, list):
        raise ExchangeError(
            f"no 'exchanges' list: expected what GET {SESSION} on client_svc returns"
        )
    if connection_id is not None and not is_connection_id(connection_id):
        raise ExchangeError(f"the session's connection_id is not {_ID_FORMAT}")
    hello_request, hello_response = _exchange(exchanges, HELLO)
    finish_request, finish_response = _exchange(exchanges, FINISH)
    return RecordedHandshake.from_json(
        hello_request, hello_response, finish_request, finish_response, connection_id=connection_id
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


def _without_envelope(body: object, where: str) -> tuple[dict[str, Any], str | None]:
    """``body`` without its ``connection_id`` envelope field, which the codecs do not know,
    and that field's value."""
    if not isinstance(body, dict):
        raise ExchangeError(f"the recorded {where} is not a JSON object")
    connection_id = body.get("connection_id")
    if connection_id is not None and not is_connection_id(connection_id):
        raise ExchangeError(f"the {where}'s connection_id is not {_ID_FORMAT}")
    return {k: v for k, v in body.items() if k != "connection_id"}, connection_id


def _decode(what: str, decoder: Callable[[Any], T], value: object) -> T:
    """``decoder(value)``, with a codec error restated as which recorded body failed."""
    try:
        return decoder(value)
    except TLSError as exc:
        raise ExchangeError(f"{what} does not decode: {exc.message}") from None


def _check_key_exchange(suite: CipherSuite, flight: ServerFlight, cke: ClientKeyExchange) -> None:
    # The codecs decode each message on its own; whether they suit the suite is checked
    # here, where the whole handshake is known (the services check it in their state machines).
    if suite.key_exchange is KeyExchange.ECDHE_RSA:
        ske = flight.server_key_exchange
        if ske is None:
            raise ExchangeError(f"{suite.name} needs a ServerKeyExchange; there is none")
        if kex.is_ffdhe(ske.group):
            raise ExchangeError(f"{suite.name} needs a ServerKeyExchange with an EC key")
        if cke.public_key is None:
            raise ExchangeError(f"{suite.name} needs the client's public_key in ClientKeyExchange")
    elif suite.key_exchange is KeyExchange.DHE:
        ske = flight.server_key_exchange
        if ske is None:
            raise ExchangeError(f"{suite.name} needs a ServerKeyExchange; there is none")
        if not kex.is_ffdhe(ske.group):
            raise ExchangeError(f"{suite.name} needs a ServerKeyExchange with DH params")
        if cke.dh_public is None:
            raise ExchangeError(f"{suite.name} needs the client's dh_Yc in ClientKeyExchange")
    else:
        if flight.server_key_exchange is not None:
            raise ExchangeError(f"{suite.name} has no ServerKeyExchange; there is one")
        if cke.encrypted_pre_master_secret is None:
            raise ExchangeError(
                f"{suite.name} needs encrypted_pre_master_secret in ClientKeyExchange"
            )
