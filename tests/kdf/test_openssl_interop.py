"""kdf_lib against a TLS stack nobody here wrote: OpenSSL, driven through Python's ``ssl``.

A real TLS 1.2 handshake runs in-process between an ``ssl`` client and server over memory BIOs.
From OpenSSL's key log (master secret) and the handshake bytes on the wire (randoms, negotiated
extensions), kdf_lib derives the keys (RFC 5246 §6.3), checks both Finished messages (§7.4.9),
opens OpenSSL's records in both directions and seals records that OpenSSL accepts (§6.2.3,
RFC 7366 encrypt-then-MAC, RFC 5288 GCM, RFC 7905 ChaCha20-Poly1305). For RSA key exchange it
also decrypts the premaster secret with the server key and re-derives OpenSSL's master secret
(RFC 5246 §8.1, RFC 7627 extended master secret).
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import kdf_lib
from kdf_lib import ffdhe, kex, pki
from kdf_lib.errors import BadRecordMac
from kdf_lib.kex import NamedGroup, SignatureScheme
from kdf_lib.messages import ClientKeyExchange, ServerKeyExchange
from kdf_lib.record import (
    MAX_PLAINTEXT,
    ContentType,
    RecordProtection,
    connection_record_layers,
)
from kdf_lib.suites import (
    SUITES,
    CipherSuite,
    KeyExchange,
    KeyMaterial,
    get_suite,
    split_key_block,
)

# Python 3.11's ssl module has no names for these; the values are OpenSSL's SSL_OP_* bits
# (include/openssl/ssl.h). NO_EXTENDED_MASTER_SECRET only exists from OpenSSL 3.0 on; each
# test that sets a bit checks the ServerHello to see that it took effect.
OP_NO_ENCRYPT_THEN_MAC = getattr(ssl, "OP_NO_ENCRYPT_THEN_MAC", 1 << 19)
OP_NO_EXTENDED_MASTER_SECRET = getattr(ssl, "OP_NO_EXTENDED_MASTER_SECRET", 1 << 0)

EXT_ENCRYPT_THEN_MAC = 22  # RFC 7366
EXT_EXTENDED_MASTER_SECRET = 23  # RFC 7627
HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2
HANDSHAKE_CLIENT_KEY_EXCHANGE = 16
HANDSHAKE_SERVER_KEY_EXCHANGE = 12
HANDSHAKE_FINISHED = 20


@dataclass(frozen=True)
class Interop:
    """One handshake configuration: an OpenSSL cipher string and what should be negotiated."""

    openssl_cipher: str
    suite_name: str
    encrypt_then_mac: bool = False
    extended_master_secret: bool = True
    #: Must run; the others skip, with the reason, if the local OpenSSL refuses the cipher.
    required: bool = False

    @property
    def id(self) -> str:
        etm = "-etm" if self.encrypt_then_mac else ""
        ems = "" if self.extended_master_secret else "-no-ems"
        return f"{self.openssl_cipher}{etm}{ems}"

    @property
    def is_aead(self) -> bool:
        return get_suite(self.suite_name).is_aead

    @property
    def options(self) -> int:
        options = 0
        # For AEAD suites the client still offers encrypt-then-MAC: the server must decline it.
        if not self.encrypt_then_mac and not self.is_aead:
            options |= OP_NO_ENCRYPT_THEN_MAC
        if not self.extended_master_secret:
            options |= OP_NO_EXTENDED_MASTER_SECRET
        return options


# Every suite in kdf_lib's table. OpenSSL offers encrypt-then-MAC by default for CBC suites, so
# CBC runs once with it (RFC 7366 records) and once with OP_NO_ENCRYPT_THEN_MAC (RFC 5246
# MAC-then-encrypt). Extended master secret is OpenSSL's default; one run turns it off.
INTEROPS = [
    Interop(
        "AES128-SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256", encrypt_then_mac=True, required=True
    ),
    Interop("AES128-SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256", required=True),
    Interop("AES128-SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256", extended_master_secret=False),
    Interop("AES256-SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA256", encrypt_then_mac=True),
    Interop("AES256-SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    Interop("AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA", encrypt_then_mac=True),
    Interop("AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"),
    Interop("AES256-SHA", "TLS_RSA_WITH_AES_256_CBC_SHA", encrypt_then_mac=True),
    Interop("AES256-SHA", "TLS_RSA_WITH_AES_256_CBC_SHA"),
    Interop("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256", required=True),
    Interop("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256", extended_master_secret=False),
    Interop("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    Interop("ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", encrypt_then_mac=True),
    Interop("ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    Interop("ECDHE-RSA-AES256-SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", encrypt_then_mac=True),
    Interop("ECDHE-RSA-AES128-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    Interop(
        "ECDHE-RSA-AES256-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", encrypt_then_mac=True
    ),
    Interop("ECDHE-RSA-AES256-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    Interop("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    Interop("ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    Interop("ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    # The OpenSSL server holds the run's RSA and ECDSA certificates and picks by suite.
    Interop(
        "ECDHE-ECDSA-AES128-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        encrypt_then_mac=True,
    ),
    Interop("ECDHE-ECDSA-AES256-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    Interop("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    Interop("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    Interop("ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    # The OpenSSL server takes the RFC 7919 ffdhe2048 group as its DH parameters.
    Interop("DHE-RSA-AES128-GCM-SHA256", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
    Interop("DHE-RSA-AES256-GCM-SHA384", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    Interop("DHE-RSA-AES128-SHA256", "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", encrypt_then_mac=True),
    Interop("DHE-RSA-AES256-SHA256", "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
    Interop("DHE-RSA-CHACHA20-POLY1305", "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
]
RSA_INTEROPS = [i for i in INTEROPS if get_suite(i.suite_name).key_exchange is KeyExchange.RSA]
DHE_INTEROPS = [i for i in INTEROPS if get_suite(i.suite_name).key_exchange is KeyExchange.DHE]


def _params(interops: list[Interop]) -> list[Any]:
    return [pytest.param(interop, id=interop.id) for interop in interops]


# -- reading the wire ------------------------------------------------------------------------------


class Reader:
    """Bounds-checked reads from peer bytes: running off the end fails the test."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, length: int) -> bytes:
        assert length <= len(self.data) - self.offset, "truncated TLS structure"
        chunk = self.data[self.offset : self.offset + length]
        self.offset += length
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.uint(length_size))

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset


@dataclass(frozen=True)
class WireRecord:
    content_type: int
    version: bytes
    fragment: bytes

    @property
    def raw(self) -> bytes:
        header = bytes((self.content_type,)) + self.version + len(self.fragment).to_bytes(2, "big")
        return header + self.fragment


def parse_records(data: bytes) -> list[WireRecord]:
    """TLSPlaintext/TLSCiphertext framing (RFC 5246 §6.2.1); the bytes must end on a record."""
    reader, records = Reader(data), []
    while reader.remaining:
        content_type = reader.uint(1)
        version = reader.take(2)
        # The ClientHello's record may say TLS 1.0 (RFC 5246 Appendix E.1); all others TLS 1.2.
        assert version in (b"\x03\x01", b"\x03\x03")
        records.append(WireRecord(content_type, version, reader.vector(2)))
    return records


def parse_extensions(reader: Reader) -> dict[int, bytes]:
    extensions: dict[int, bytes] = {}
    if not reader.remaining:
        return extensions
    block = Reader(reader.vector(2))
    while block.remaining:
        ext_type = block.uint(2)
        assert ext_type not in extensions, f"extension {ext_type} sent twice"
        extensions[ext_type] = block.vector(2)
    assert not reader.remaining
    return extensions


@dataclass(frozen=True)
class Hello:
    random: bytes
    cipher_suites: tuple[int, ...]
    extensions: dict[int, bytes]


def parse_client_hello(body: bytes) -> Hello:
    """RFC 5246 §7.4.1.2."""
    reader = Reader(body)
    assert reader.take(2) == b"\x03\x03"
    random = reader.take(32)
    reader.vector(1)  # session_id
    suites_bytes = reader.vector(2)
    suites = tuple(
        int.from_bytes(suites_bytes[i : i + 2], "big") for i in range(0, len(suites_bytes), 2)
    )
    reader.vector(1)  # compression methods
    return Hello(random, suites, parse_extensions(reader))


def parse_server_hello(body: bytes) -> Hello:
    """RFC 5246 §7.4.1.3: version, random, session_id, cipher_suite, compression, extensions."""
    reader = Reader(body)
    assert reader.take(2) == b"\x03\x03"
    random = reader.take(32)
    reader.vector(1)  # session_id
    cipher_suite = reader.uint(2)
    assert reader.uint(1) == 0  # no compression
    return Hello(random, (cipher_suite,), parse_extensions(reader))


@dataclass
class Flow:
    """What went over the wire during the handshake, in order, split per sender."""

    #: (sender, complete handshake message) in wire order; ``None`` marks where the sender's
    #: protected Finished went, whose plaintext only kdf_lib can supply.
    handshake: list[tuple[str, bytes | None]] = field(default_factory=list)
    #: sender -> the records it sent after its ChangeCipherSpec (its Finished).
    protected: dict[str, list[bytes]] = field(default_factory=lambda: {"client": [], "server": []})


def parse_flow(chunks: list[tuple[str, bytes]]) -> Flow:
    flow = Flow()
    buffers = {"client": b"", "server": b""}
    after_ccs = {"client": False, "server": False}
    for sender, data in chunks:
        for record in parse_records(data):
            if after_ccs[sender]:
                if not flow.protected[sender]:
                    flow.handshake.append((sender, None))
                flow.protected[sender].append(record.raw)
            elif record.content_type == ContentType.change_cipher_spec:
                assert record.fragment == b"\x01"
                assert buffers[sender] == b"", "CCS in the middle of a handshake message"
                after_ccs[sender] = True
            else:
                assert record.content_type == ContentType.handshake, record.content_type
                # Handshake messages may span records (RFC 5246 §6.2.1): reassemble.
                buffers[sender] += record.fragment
                while len(buffers[sender]) >= 4:
                    length = int.from_bytes(buffers[sender][1:4], "big")
                    if len(buffers[sender]) < 4 + length:
                        break
                    flow.handshake.append((sender, buffers[sender][: 4 + length]))
                    buffers[sender] = buffers[sender][4 + length :]
    assert buffers == {"client": b"", "server": b""}
    return flow


def _message(flow: Flow, msg_type: int) -> bytes:
    """The body of the one handshake message of ``msg_type``."""
    found = [m for _, m in flow.handshake if m is not None and m[0] == msg_type]
    assert len(found) == 1, f"expected one handshake message of type {msg_type}"
    return found[0][4:]


# -- one real handshake ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerFiles:
    """The server's certificate and key as files for OpenSSL, and the key for kdf_lib."""

    cert_path: Path
    key_path: Path
    private_key: rsa.RSAPrivateKey
    ecdsa_cert_path: Path
    ecdsa_key_path: Path
    dh_params_path: Path


@pytest.fixture(scope="module")
def server_files(
    tmp_path_factory: pytest.TempPathFactory,
    server_identity: pki.Issued,
    ecdsa_server_identity: pki.IssuedEcdsa,
) -> ServerFiles:
    """The run's server identities (RSA and ECDSA); OpenSSL's client does not verify them."""
    directory = tmp_path_factory.mktemp("openssl-interop")
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(server_identity.certificate_pem())
    key_path.write_bytes(server_identity.private_key_pem())
    ecdsa_cert_path, ecdsa_key_path = directory / "ecdsa.pem", directory / "ecdsa.key"
    ecdsa_cert_path.write_bytes(ecdsa_server_identity.certificate_pem())
    ecdsa_key_path.write_bytes(ecdsa_server_identity.private_key_pem())
    dh_params_path = directory / "ffdhe2048.pem"
    dh_params_path.write_bytes(ffdhe.parameters_pem(ffdhe.FFDHE_GROUPS[NamedGroup.ffdhe2048]))
    return ServerFiles(
        cert_path,
        key_path,
        server_identity.private_key,
        ecdsa_cert_path,
        ecdsa_key_path,
        dh_params_path,
    )


@dataclass
class Connection:
    """An OpenSSL client and server after a completed TLS 1.2 handshake, plus what kdf_lib needs."""

    interop: Interop
    suite: CipherSuite
    client: ssl.SSLObject
    server: ssl.SSLObject
    client_in: ssl.MemoryBIO
    client_out: ssl.MemoryBIO
    server_in: ssl.MemoryBIO
    server_out: ssl.MemoryBIO
    flow: Flow
    client_hello: Hello
    server_hello: Hello
    master_secret: bytes
    keylog: list[list[str]]

    @property
    def encrypt_then_mac(self) -> bool:
        return EXT_ENCRYPT_THEN_MAC in self.server_hello.extensions

    @property
    def extended_master_secret(self) -> bool:
        return EXT_EXTENDED_MASTER_SECRET in self.server_hello.extensions

    def keys(self) -> KeyMaterial:
        block = kdf_lib.key_block(
            self.master_secret,
            self.client_hello.random,
            self.server_hello.random,
            self.suite.key_block_length,
            self.suite.prf_hash,
        )
        return split_key_block(self.suite, block)

    def layers(self, side: str) -> tuple[RecordProtection, RecordProtection]:
        """kdf_lib's (write, read) record layers for ``side``, both at sequence 0."""
        return connection_record_layers(self.keys(), side, encrypt_then_mac=self.encrypt_then_mac)

    def openssl_writes(self, side: str, data: bytes) -> bytes:
        """Have OpenSSL's ``side`` send application data; return the records it put on the wire."""
        sslobj, out = (
            (self.client, self.client_out) if side == "client" else (self.server, self.server_out)
        )
        assert sslobj.write(data) == len(data)
        wire = out.read()
        assert wire and not out.pending
        return wire

    def openssl_reads(self, side: str, wire: bytes, expected_length: int) -> bytes:
        """Feed ``wire`` to OpenSSL's ``side`` and read back what it accepts."""
        sslobj, incoming = (
            (self.client, self.client_in) if side == "client" else (self.server, self.server_in)
        )
        incoming.write(wire)
        received = b""
        while len(received) < expected_length:
            received += sslobj.read(expected_length - len(received))
        with pytest.raises(ssl.SSLWantReadError):
            sslobj.read(1)  # nothing left over
        return received


def _context(purpose: int, interop: Interop) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.set_ciphers(interop.openssl_cipher)
    except ssl.SSLError as exc:
        if interop.required:
            raise
        pytest.skip(
            f"local OpenSSL ({ssl.OPENSSL_VERSION}) refuses {interop.openssl_cipher}: {exc}"
        )
    return context


def run_handshake(interop: Interop, files: ServerFiles, keylog_path: Path) -> Connection:
    server_context = _context(ssl.PROTOCOL_TLS_SERVER, interop)
    server_context.load_cert_chain(files.cert_path, files.key_path)
    server_context.load_cert_chain(files.ecdsa_cert_path, files.ecdsa_key_path)
    server_context.load_dh_params(files.dh_params_path)
    client_context = _context(ssl.PROTOCOL_TLS_CLIENT, interop)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    client_context.options |= interop.options
    client_context.keylog_filename = str(keylog_path)

    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_side=False)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    chunks: list[tuple[str, bytes]] = []
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, sslobj, out, peer_in in (
            ("client", client, client_out, server_in),
            ("server", server, server_out, client_in),
        ):
            if not done[side]:
                try:
                    sslobj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as exc:
                    if interop.required:
                        raise
                    pytest.skip(f"{ssl.OPENSSL_VERSION} cannot do {interop.id}: {exc}")
            data = out.read()
            if data:
                chunks.append((side, data))
                peer_in.write(data)
        if all(done.values()) and not client_in.pending and not server_in.pending:
            break
    assert all(done.values()), "handshake did not complete"
    assert client.version() == server.version() == "TLSv1.2"

    flow = parse_flow(chunks)
    client_hello = parse_client_hello(_message(flow, HANDSHAKE_CLIENT_HELLO))
    server_hello = parse_server_hello(_message(flow, HANDSHAKE_SERVER_HELLO))
    keylog = [
        line.split() for line in keylog_path.read_text().splitlines() if not line.startswith("#")
    ]
    secrets_for_hello = [
        bytes.fromhex(fields[2])
        for fields in keylog
        if fields[0] == "CLIENT_RANDOM" and bytes.fromhex(fields[1]) == client_hello.random
    ]
    if EXT_EXTENDED_MASTER_SECRET in server_hello.extensions and not interop.extended_master_secret:
        pytest.skip(f"{ssl.OPENSSL_VERSION} ignores SSL_OP_NO_EXTENDED_MASTER_SECRET (3.0+ only)")
    assert len(secrets_for_hello) == 1, "key log has no CLIENT_RANDOM line for this ClientHello"
    return Connection(
        interop=interop,
        suite=get_suite(interop.suite_name),
        client=client,
        server=server,
        client_in=client_in,
        client_out=client_out,
        server_in=server_in,
        server_out=server_out,
        flow=flow,
        client_hello=client_hello,
        server_hello=server_hello,
        master_secret=secrets_for_hello[0],
        keylog=keylog,
    )


@pytest.fixture(params=_params(INTEROPS))
def connection(
    request: pytest.FixtureRequest, server_files: ServerFiles, tmp_path: Path
) -> Connection:
    return run_handshake(request.param, server_files, tmp_path / "tls.keylog")


@pytest.fixture(params=_params(RSA_INTEROPS))
def rsa_connection(
    request: pytest.FixtureRequest, server_files: ServerFiles, tmp_path: Path
) -> Connection:
    return run_handshake(request.param, server_files, tmp_path / "tls.keylog")


@pytest.fixture(params=_params(DHE_INTEROPS))
def dhe_connection(
    request: pytest.FixtureRequest, server_files: ServerFiles, tmp_path: Path
) -> Connection:
    return run_handshake(request.param, server_files, tmp_path / "tls.keylog")


# -- what OpenSSL negotiated -----------------------------------------------------------------------


def test_openssl_negotiated_the_forced_suite_and_extensions(connection: Connection) -> None:
    interop, suite = connection.interop, connection.suite
    assert connection.server_hello.cipher_suites == (suite.code,)
    assert connection.client.cipher()[0] == interop.openssl_cipher
    if interop.encrypt_then_mac or interop.is_aead:
        assert EXT_ENCRYPT_THEN_MAC in connection.client_hello.extensions
    # RFC 7366 §3: never for AEAD suites; for CBC exactly when the client offered it.
    assert connection.encrypt_then_mac is interop.encrypt_then_mac
    assert connection.extended_master_secret is interop.extended_master_secret


def test_kdf_lib_derives_openssls_master_secret_from_the_premaster_secret(
    rsa_connection: Connection, server_files: ServerFiles
) -> None:
    connection = rsa_connection
    suite = connection.suite
    # RFC 5246 §7.4.7.1: the RSA-encrypted premaster secret, decrypted with the server's key.
    encrypted = Reader(_message(connection.flow, HANDSHAKE_CLIENT_KEY_EXCHANGE)).vector(2)
    pms = server_files.private_key.decrypt(encrypted, padding.PKCS1v15())
    assert len(pms) == 48
    assert pms[:2] == b"\x03\x03"  # client_version
    logged = [
        bytes.fromhex(f[2])
        for f in connection.keylog
        if f[0] == "RSA" and f[1] == encrypted[:8].hex()
    ]
    assert logged == [pms]
    if connection.extended_master_secret:
        # RFC 7627 §3: session_hash = Hash(ClientHello .. ClientKeyExchange).
        upto: list[bytes] = []
        for _, message in connection.flow.handshake:
            assert message is not None, "ClientKeyExchange must come before any Finished"
            upto.append(message)
            if message[0] == HANDSHAKE_CLIENT_KEY_EXCHANGE:
                break
        session_hash = hashlib.new(suite.prf_hash, b"".join(upto)).digest()
        master = kdf_lib.extended_master_secret(pms, session_hash, suite.prf_hash)
    else:
        master = kdf_lib.master_secret(
            pms, connection.client_hello.random, connection.server_hello.random, suite.prf_hash
        )
    assert master == connection.master_secret


def test_kdf_lib_reads_and_writes_openssls_dhe_key_exchange_byte_for_byte(
    dhe_connection: Connection, server_files: ServerFiles
) -> None:
    """OpenSSL's ServerDHParams name the RFC 7919 group kdf_lib knows, its signature verifies
    over kdf_lib's signed content, both public values pass kdf_lib's check, and kdf_lib's
    encoders give back OpenSSL's ServerKeyExchange and ClientKeyExchange exactly."""
    connection = dhe_connection
    ske_body = _message(connection.flow, HANDSHAKE_SERVER_KEY_EXCHANGE)
    reader = Reader(ske_body)
    p, g, server_public = reader.vector(2), reader.vector(2), reader.vector(2)
    scheme = SignatureScheme(reader.uint(2))
    signature = reader.vector(2)
    assert reader.remaining == 0
    group = ffdhe.group_for_params(p, g)
    assert group is not None and group.name == "ffdhe2048"
    ffdhe.check_public_value(group, server_public)
    ske = ServerKeyExchange(NamedGroup(group.code), server_public, scheme, signature)
    assert ske.encode()[4:] == ske_body
    kex.verify_server_params(
        server_files.private_key.public_key(),
        scheme,
        signature,
        connection.client_hello.random,
        connection.server_hello.random,
        ske.params,
    )
    cke_body = _message(connection.flow, HANDSHAKE_CLIENT_KEY_EXCHANGE)
    client_public = Reader(cke_body).vector(2)
    ffdhe.check_public_value(group, client_public)
    assert ClientKeyExchange(dh_public=client_public).encode()[4:] == cke_body


# -- Finished: the first protected records ---------------------------------------------------------


def test_both_finished_records_open_and_carry_the_verify_data_kdf_lib_computes(
    connection: Connection,
) -> None:
    suite, flow = connection.suite, connection.flow
    assert [len(flow.protected[side]) for side in ("client", "server")] == [1, 1]
    decrypted: dict[int, bytes] = {}
    for index, (sender, message) in enumerate(flow.handshake):
        if message is not None:
            continue
        receiver = "server" if sender == "client" else "client"
        _, reader = connection.layers(receiver)
        assert reader.seq == 0  # sequence numbers restart after ChangeCipherSpec (§6.1)
        content_type, finished = reader.open(flow.protected[sender][0])
        assert content_type is ContentType.handshake
        assert finished[:4] == bytes((HANDSHAKE_FINISHED, 0, 0, 12))
        # §7.4.9: every handshake message before this one, in order; for the server that
        # includes the client's Finished (and a NewSessionTicket, RFC 5077 §3.3).
        transcript = b"".join(
            decrypted.get(i, m) or b"" for i, (_, m) in enumerate(flow.handshake[:index])
        )
        handshake_hash = hashlib.new(suite.prf_hash, transcript).digest()
        expected = kdf_lib.finished_verify_data(
            connection.master_secret, sender, handshake_hash, suite.prf_hash
        )
        assert finished[4:] == expected
        decrypted[index] = finished
    assert [flow.handshake[i][0] for i in sorted(decrypted)] == ["client", "server"]


# -- application data ------------------------------------------------------------------------------

REQUEST = b"GET /handshake/step HTTP/1.1\r\nHost: interop.kdf-lib.test\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(("writer", "message"), [("client", REQUEST), ("server", RESPONSE)])
def test_openssl_application_data_opens_with_kdf_lib(
    connection: Connection, writer: str, message: bytes
) -> None:
    reader_side = "server" if writer == "client" else "client"
    _, reader = connection.layers(reader_side)
    reader.seq = 1  # seq 0 was the writer's Finished
    wire = connection.openssl_writes(writer, message)
    assert reader.open(wire) == (ContentType.application_data, message)
    # The OpenSSL peer accepts the same bytes: they were a real record, not a kdf_lib artefact.
    assert connection.openssl_reads(reader_side, wire, len(message)) == message


@pytest.mark.parametrize("writer", ["client", "server"])
def test_openssl_multi_record_write_opens_with_open_many(
    connection: Connection, writer: str
) -> None:
    reader_side = "server" if writer == "client" else "client"
    _, reader = connection.layers(reader_side)
    reader.seq = 1
    message = bytes(range(256)) * 160  # 40960 bytes: OpenSSL cuts 2^14-byte records (§6.2.1)
    wire = connection.openssl_writes(writer, message)
    opened = reader.open_many(wire)
    assert len(opened) >= 3
    assert all(content_type is ContentType.application_data for content_type, _ in opened)
    assert all(len(plaintext) <= MAX_PLAINTEXT for _, plaintext in opened)
    assert b"".join(plaintext for _, plaintext in opened) == message
    assert reader.seq == 1 + len(opened)


@pytest.mark.parametrize("writer", ["client", "server"])
def test_openssl_record_at_the_wrong_sequence_number_is_rejected(
    connection: Connection, writer: str
) -> None:
    reader_side = "server" if writer == "client" else "client"
    wire = connection.openssl_writes(writer, REQUEST)
    for seq in (0, 2):
        _, reader = connection.layers(reader_side)
        reader.seq = seq
        with pytest.raises(BadRecordMac):
            reader.open(wire)


@pytest.mark.parametrize("writer", ["client", "server"])
def test_records_sealed_by_kdf_lib_are_accepted_by_openssl(
    connection: Connection, writer: str
) -> None:
    reader_side = "server" if writer == "client" else "client"
    sealer, _ = connection.layers(writer)
    sealer.seq = 1  # the next record after the writer's Finished
    for message in (REQUEST, b"", bytes(range(256)) * 64):  # 64 * 256 = 2^14, the largest fragment
        wire = sealer.seal(ContentType.application_data, message)
        if message:
            assert connection.openssl_reads(reader_side, wire, len(message)) == message
        else:
            # An empty application-data fragment is legal (§6.2.1); OpenSSL swallows it.
            connection.openssl_reads(reader_side, wire, 0)
    # More than one record in one write, back to back.
    message = b"x" * 40000
    wire = sealer.seal_many(ContentType.application_data, message)
    assert connection.openssl_reads(reader_side, wire, len(message)) == message
    assert sealer.seq == 7


def test_openssl_and_kdf_lib_take_turns_on_one_connection(connection: Connection) -> None:
    # The client's OpenSSL record is seq 1; kdf_lib then continues the same direction at seq 2.
    _, server_reader = connection.layers("server")
    server_reader.seq = 1
    wire = connection.openssl_writes("client", REQUEST)
    assert connection.openssl_reads("server", wire, len(REQUEST)) == REQUEST
    assert server_reader.open(wire)[1] == REQUEST
    client_sealer, _ = connection.layers("client")
    client_sealer.seq = server_reader.seq
    follow_up = b"second request, sealed by kdf_lib"
    assert (
        connection.openssl_reads(
            "server", client_sealer.seal(ContentType.application_data, follow_up), len(follow_up)
        )
        == follow_up
    )
    # And the answer goes the other way: OpenSSL's server record at seq 1, opened by kdf_lib.
    _, client_reader = connection.layers("client")
    client_reader.seq = 1
    assert client_reader.open(connection.openssl_writes("server", RESPONSE))[1] == RESPONSE


def test_close_notify_sealed_by_kdf_lib_closes_the_openssl_server(connection: Connection) -> None:
    client_sealer, _ = connection.layers("client")
    client_sealer.seq = 1
    close_notify = b"\x01\x00"  # warning, close_notify (RFC 5246 §7.2.1)
    connection.server_in.write(client_sealer.seal(ContentType.alert, close_notify))
    # Python's SSLObject.read returns b"" when the peer's close_notify arrives.
    assert connection.server.read(1) == b""
    # The server answers with its own close_notify, which kdf_lib opens as server record 1.
    connection.server.unwrap()
    _, client_reader = connection.layers("client")
    client_reader.seq = 1
    assert client_reader.open(connection.server_out.read()) == (ContentType.alert, close_notify)


def test_openssl_rejects_a_kdf_lib_record_at_the_wrong_sequence_number(
    connection: Connection,
) -> None:
    # Control for the tests above: OpenSSL really checks what kdf_lib sends.
    sealer, _ = connection.layers("client")
    sealer.seq = 2  # OpenSSL's server expects 1
    connection.server_in.write(sealer.seal(ContentType.application_data, REQUEST))
    with pytest.raises(ssl.SSLError, match=r"(?i)bad record mac|decryption failed"):
        connection.server.read(len(REQUEST))


def test_interop_covers_every_suite_in_the_table() -> None:
    assert {interop.suite_name for interop in INTEROPS} == set(SUITES)
    cbc = {i.suite_name for i in INTEROPS if not i.is_aead and i.encrypt_then_mac}
    assert cbc, "no CBC suite runs with encrypt-then-MAC"
